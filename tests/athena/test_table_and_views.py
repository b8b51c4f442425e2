"""The Glue tables and the Athena views fit the real output.

Output comes from the real `xdr-sync demo` (the simulated tenant, both streams synced twice, so some
alerts and incidents have several versions). The table's columns and the views' SQL are read from infra/template.yaml itself.
DuckDB stands in for Athena: the table is built from the raw lines with the JSON SerDe's rules
(column names case-insensitive, `mapping.*` renames, nested objects in string columns kept as their
JSON text), and the views' Trino SQL runs unchanged, with DuckDB macros for the Trino functions it
calls. sqlglot checks that the SQL parses as Trino.
"""

import gzip
import json
import pathlib
import subprocess

import duckdb
import pytest
import sqlglot
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
# Trino functions the views use, and what they mean in DuckDB.
TRINO_COMPAT = [
    "CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
]
# Columns whose JSON shape is open: the SerDe hands over the object's JSON text.
OPEN_SHAPE = {"evidence", "customdetails", "additionaldata", "alerts"}
# Columns only some configurations write: `alerts` on incidents read with $expand=alerts.
OPTIONAL = {"incidents": {"alerts"}}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) kept as plain values."""


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


CfnLoader.add_multi_constructor("!", _any_tag)


@pytest.fixture(scope="module")
def template():
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


@pytest.fixture(scope="module")
def table(template):
    return template["Resources"]["AlertsTable"]["Properties"]["TableInput"]


@pytest.fixture(scope="module")
def incidents_table(template):
    return template["Resources"]["IncidentsTable"]["Properties"]["TableInput"]


@pytest.fixture(scope="module")
def named_queries(template):
    return {
        name: resource["Properties"]["QueryString"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Athena::NamedQuery"
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Real output: the demo syncs the simulated tenant twice; run it twice for more versions."""
    demo = tmp_path_factory.mktemp("demo") / "xdr-demo"
    for _ in range(2):
        subprocess.run(
            ["cargo", "run", "--quiet", "-p", "xdr-sync", "--", "demo", "--dir", str(demo)],
            cwd=ROOT, check=True, capture_output=True, text=True,
        )
    return demo / "output" / "defender-xdr"


@pytest.fixture(scope="module")
def output(demo):
    data = demo / "alerts"
    assert sorted(data.glob("dt=*/*.gz")), "the demo wrote alert objects"
    return data


@pytest.fixture(scope="module")
def incidents_output(demo):
    data = demo / "incidents"
    assert sorted(data.glob("dt=*/*.gz")), "the demo wrote incident objects"
    return data


def records(data):
    for path in sorted(data.glob("dt=*/*.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                yield path.parent.name[3:], json.loads(line)


def json_key(record_keys, column, serde):
    """The JSON key the SerDe reads for a column (mappings, then case-insensitive)."""
    mapped = serde.get(f"mapping.{column}")
    if mapped is not None:
        return mapped if mapped in record_keys else None
    for key in record_keys:
        if key.lower() == column:
            return key
    return None


def compatible(glue_type, value, column):
    if value is None:
        return True
    if glue_type == "string":
        return isinstance(value, str) or (column in OPEN_SHAPE and isinstance(value, (dict, list)))
    if glue_type == "array<string>":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if glue_type.startswith("array<struct<"):
        fields = {f.split(":")[0] for f in glue_type[len("array<struct<"):-2].split(",")}
        return isinstance(value, list) and all(
            isinstance(item, dict) and {k.lower() for k in item} <= fields
            and all(v is None or isinstance(v, str) for v in item.values())
            for item in value
        )
    raise AssertionError(f"no compatibility rule for {glue_type}")


def check_columns(table, data, minimum):
    serde = table["StorageDescriptor"]["SerdeInfo"]["Parameters"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert [c["Name"] for c in table["PartitionKeys"]] == ["dt"]
    seen = {name: 0 for name, _ in columns}
    count = 0
    for _, record in records(data):
        count += 1
        for name, glue_type in columns:
            key = json_key(record.keys(), name, serde)
            if key is None:
                continue
            seen[name] += 1
            assert compatible(glue_type, record[key], name), f"{name} ({glue_type}) vs {record[key]!r:.120}"
    assert count > minimum
    optional = OPTIONAL.get(table["Name"], set())
    missing = [name for name, hits in seen.items() if hits == 0 and name not in optional]
    assert not missing, f"Glue columns absent from every record: {missing}"
    for name, _ in columns:
        assert name == name.lower(), "Glue keeps column names in lower case"


def test_every_glue_column_is_in_the_data_with_a_compatible_type(table, output):
    check_columns(table, output, 500)


def test_every_incidents_column_is_in_the_data_with_a_compatible_type(incidents_table, incidents_output):
    check_columns(incidents_table, incidents_output, 200)
    # An expanded line (IncidentsExpandAlerts) fits too: `alerts` is an open-shape string column.
    _, record = next(records(incidents_output))
    assert compatible("string", [{"id": "da1", "evidence": []}], "alerts")


def test_partition_projection_matches_the_layout(table, incidents_table):
    for glue in (table, incidents_table):
        parameters = glue["Parameters"]
        assert parameters["projection.enabled"] == "true"
        assert parameters["projection.dt.type"] == "date"
        assert parameters["projection.dt.format"] == "yyyy-MM-dd"
        assert glue["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"


def test_the_views_and_queries_are_trino_sql(named_queries):
    assert {"AlertsHistoryView", "AlertsLatestView", "IncidentsHistoryView", "IncidentsLatestView"} <= named_queries.keys()
    for name, sql in named_queries.items():
        sqlglot.parse_one(sql, read="trino")  # raises on anything Trino would not parse


DUCKDB_TYPES = {"string": "VARCHAR", "array<string>": "VARCHAR[]"}


def duckdb_type(glue_type):
    if glue_type in DUCKDB_TYPES:
        return DUCKDB_TYPES[glue_type]
    fields = glue_type[len("array<struct<"):-2].split(",")
    return "STRUCT(" + ", ".join(f'"{f.split(":")[0]}" VARCHAR' for f in fields) + ")[]"


def serde_value(record, column, glue_type, serde):
    """What the OpenX JSON SerDe returns for `column` of one line."""
    key = json_key(record.keys(), column, serde)
    value = None if key is None else record[key]
    if value is None:
        return None
    if glue_type == "string":
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    if glue_type == "array<string>":
        return list(value)
    fields = [f.split(":")[0] for f in glue_type[len("array<struct<"):-2].split(",")]
    return [{field: {k.lower(): v for k, v in item.items()}.get(field) for field in fields} for item in value]


def load_table(connection, table, data):
    """The table (`alerts`, `incidents`) as Athena sees it through Glue and the JSON SerDe."""
    serde = table["StorageDescriptor"]["SerdeInfo"]["Parameters"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    definition = ", ".join(f"{name} {duckdb_type(glue_type)}" for name, glue_type in columns)
    connection.execute(f"CREATE TABLE {table['Name']} ({definition}, dt VARCHAR)")
    rows = [
        [serde_value(record, name, glue_type, serde) for name, glue_type in columns] + [dt]
        for dt, record in records(data)
    ]
    placeholders = ", ".join("?" for _ in range(len(columns) + 1))
    connection.executemany(f"INSERT INTO {table['Name']} VALUES ({placeholders})", rows)
    return len(rows)


@pytest.fixture(scope="module")
def athena(table, incidents_table, named_queries, output, incidents_output):
    connection = duckdb.connect()
    for macro in TRINO_COMPAT:
        connection.execute(macro)
    lines = load_table(connection, table, output)
    load_table(connection, incidents_table, incidents_output)
    for view in ("AlertsHistoryView", "AlertsLatestView", "IncidentsHistoryView", "IncidentsLatestView"):
        connection.execute(named_queries[view])
    return connection, lines


def test_history_has_every_version_and_latest_one_row_per_alert(athena, output):
    athena, lines = athena
    distinct = len({record["id"] for _, record in records(output)})
    assert athena.execute("SELECT count(*) FROM alerts_history").fetchone()[0] == lines
    assert athena.execute("SELECT count(*) FROM alerts_latest").fetchone()[0] == distinct
    assert distinct < lines, "some alerts have several versions"
    # For an alert with several versions, latest is its newest one.
    alert, newest = athena.execute(
        """SELECT id, max(last_update_time) FROM alerts_history GROUP BY id HAVING count(*) > 1 LIMIT 1"""
    ).fetchone()
    latest = athena.execute("SELECT last_update_time, status FROM alerts_latest WHERE id = ?", [alert]).fetchone()
    assert latest[0] == newest
    # The 7-digit timestamps parse.
    nulls = athena.execute("SELECT count(*) FROM alerts_history WHERE last_update_time IS NULL").fetchone()[0]
    assert nulls == 0


def test_the_useful_queries_run_and_answer(athena, named_queries):
    athena, _ = athena
    results = {}
    for name in ("OpenHighSeverityQuery", "AlertsBySourceQuery", "MeanTimeToResolveQuery"):
        cursor = athena.execute(named_queries[name])
        results[name] = ([column[0] for column in cursor.description], cursor.fetchall())
    columns, rows = results["AlertsBySourceQuery"]
    assert columns == ["servicesource", "alerts"] and rows, "the demo has alerts from the last 7 days"
    columns, rows = results["MeanTimeToResolveQuery"]
    assert columns == ["severity", "resolved_alerts", "mean_minutes_to_resolve"] and rows
    assert all(row[2] is not None and row[2] >= 0 for row in rows)
    columns, rows = results["OpenHighSeverityQuery"]
    assert rows and all(row[3] != "resolved" for row in rows)
    # Printed for the README (pytest -s shows it).
    for name, (columns, rows) in results.items():
        print(f"\n{name}: {columns}")
        for row in rows[:5]:
            print("  ", row)


def test_incidents_history_latest_and_the_queries_that_join_them_to_alerts(athena, named_queries, incidents_output):
    athena, _ = athena
    versions = [record for _, record in records(incidents_output)]
    distinct = len({record["id"] for record in versions})
    assert athena.execute("SELECT count(*) FROM incidents_history").fetchone()[0] == len(versions)
    assert athena.execute("SELECT count(*) FROM incidents_latest").fetchone()[0] == distinct
    assert distinct < len(versions), "incidents change with their alerts"
    # Every alert names an incident the incidents stream has.
    orphans = athena.execute(
        "SELECT count(*) FROM alerts_latest a LEFT JOIN incidents_latest i ON i.id = a.incidentid WHERE i.id IS NULL"
    ).fetchone()[0]
    assert orphans == 0

    cursor = athena.execute(named_queries["OpenIncidentsWithAlertsQuery"])
    columns = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    assert columns == ["incident_id", "displayname", "incident_severity", "incident_status", "assignedto",
                       "alert_id", "title", "servicesource", "alert_severity", "alert_status"]
    assert rows and all(row[3] not in ("resolved", "redirected") for row in rows)
    # An open incident's alerts are all listed with it, and each alert names that incident.
    incident = rows[0][0]
    listed = {row[5] for row in rows if row[0] == incident}
    members = {r[0] for r in athena.execute("SELECT id FROM alerts_latest WHERE incidentid = ?", [incident]).fetchall()}
    assert listed == members and members

    cursor = athena.execute(named_queries["IncidentTimeToResolveQuery"])
    resolve_columns = [column[0] for column in cursor.description]
    resolved = cursor.fetchall()
    assert resolve_columns == ["severity", "resolved_incidents", "mean_minutes_to_resolve", "longest_minutes_to_resolve"]
    assert resolved and all(row[1] > 0 and row[2] is not None and row[2] >= 0 and row[3] >= row[2] for row in resolved)
    print(f"\nOpenIncidentsWithAlertsQuery: {columns}")
    for row in rows[:5]:
        print("  ", row)
    print(f"\nIncidentTimeToResolveQuery: {resolve_columns}")
    for row in resolved:
        print("  ", row)


def test_objects_of_several_gzip_members_read_as_one_stream(output, tmp_path):
    """Large objects are gzip members one after another (libdeflate compresses 2 MiB chunks).
    Readers must take every member, not only the first: Python's gzip and DuckDB do."""
    lines = [record for _, record in records(output)][:40]
    assert len(lines) == 40
    halves = ["".join(json.dumps(r, separators=(",", ":")) + "\n" for r in part) for part in (lines[:25], lines[25:])]
    path = tmp_path / "two-members.ndjson.gz"
    path.write_bytes(gzip.compress(halves[0].encode()) + gzip.compress(halves[1].encode()))
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        assert len(stream.read().splitlines()) == 40
    count = duckdb.connect().execute(
        "SELECT count(*) FROM read_ndjson_objects(?, compression = 'gzip')", [str(path)]
    ).fetchone()[0]
    assert count == 40

"""The Glue tables and the Athena views fit the real output.

Output comes from the real `xdr-sync demo` (the simulated tenant, both streams synced twice, so some
alerts and incidents have several versions). The table's columns and the views' SQL are read from infra/template.yaml itself.
DuckDB stands in for Athena: the table is built from the raw lines with the JSON SerDe's rules
(column names case-insensitive, `mapping.*` renames, nested objects in string columns kept as their
JSON text), and the views' Trino SQL runs unchanged, with DuckDB macros for the Trino functions it
calls. sqlglot checks that the SQL parses as Trino.
"""

import datetime
import gzip
import json
import os
import pathlib
import re
import socket
import subprocess

import duckdb
import pytest
import sqlglot
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The tenant list of a registry table that lists none yet (shared/xdr-aws/src/glue_tables.rs).
NO_TENANT = "00000000-0000-0000-0000-000000000000"
TEMPLATE = ROOT / "infra" / "template.yaml"
# Trino functions the views use, and what they mean in DuckDB.
TRINO_COMPAT = [
    "CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
    # Trino's date_format takes MySQL's specifiers; the queries use %Y-%m-%d, strftime's too.
    "CREATE MACRO date_format(d, f) AS strftime(d, f)",
]
# Columns whose JSON shape is open: the SerDe hands over the object's JSON text.
OPEN_SHAPE = {"evidence", "customdetails", "additionaldata", "alerts"}
# Columns only some configurations write: `alerts` on incidents read with $expand=alerts.
OPTIONAL = {"incidents": {"alerts"}}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags: !If, !Sub and !Ref kept as their long forms (the
    tables and views differ by Tenancy), the others as plain values."""


KEPT = {"If": "Fn::If", "Sub": "Fn::Sub", "Ref": "Ref", "Join": "Fn::Join", "Split": "Fn::Split"}


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {KEPT[suffix]: value} if suffix in KEPT else value


CfnLoader.add_multi_constructor("!", _any_tag)
NO_VALUE = object()


DEFAULTS = {
    name: str(parameter["Default"])
    for name, parameter in yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)["Parameters"].items()
    if "Default" in parameter
}


def resolve(node, registry):
    """The template's value for one Tenancy with the parameters' defaults: `RegistryDriven`
    decides each !If (other conditions take their first branch), AWS::NoValue drops its key,
    !Join and !Split are applied, and a !Sub's own variables are put in."""
    if isinstance(node, list):
        return [item for item in (resolve(n, registry) for n in node) if item is not NO_VALUE]
    if isinstance(node, dict) and node.keys() == {"Fn::Join"}:
        separator, items = node["Fn::Join"]
        return separator.join(resolve(items, registry))
    if isinstance(node, dict) and node.keys() == {"Fn::Split"}:
        separator, text = node["Fn::Split"]
        return resolve(text, registry).split(separator)
    if not isinstance(node, dict):
        return node
    if node.keys() == {"Fn::If"}:
        condition, then, otherwise = node["Fn::If"]
        taken = registry if condition == "RegistryDriven" else (not registry if condition == "SingleTenant" else True)
        return resolve(then if taken else otherwise, registry)
    if node.keys() == {"Ref"}:
        if node["Ref"] == "AWS::NoValue":
            return NO_VALUE
        return DEFAULTS.get(node["Ref"], f"<{node['Ref']}>")
    if node.keys() == {"Fn::Sub"}:
        sub = node["Fn::Sub"]
        if isinstance(sub, str):
            return sub
        text, variables = sub
        for name, value in variables.items():
            value = resolve(value, registry)
            if isinstance(value, str):
                text = text.replace("${" + name + "}", value)
        return text.replace("${!", "${")  # CloudFormation's escape for a literal ${
    return {key: value for key, value in ((k, resolve(v, registry)) for k, v in node.items()) if value is not NO_VALUE}


@pytest.fixture(scope="module")
def template():
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def tables_of(template, registry):
    resources = template["Resources"]
    return tuple(resolve(resources[name]["Properties"]["TableInput"], registry) for name in ("AlertsTable", "IncidentsTable"))


def queries_of(template, registry):
    """The saved queries a stack of that Tenancy has, by resource name."""
    return {
        name: resolve(resource["Properties"]["QueryString"], registry)
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Athena::NamedQuery"
        and resource.get("Condition", "RegistryDriven" if registry else "SingleTenant")
        == ("RegistryDriven" if registry else "SingleTenant")
    }


@pytest.fixture(scope="module")
def table(template):
    return tables_of(template, registry=False)[0]


@pytest.fixture(scope="module")
def incidents_table(template):
    return tables_of(template, registry=False)[1]


@pytest.fixture(scope="module")
def named_queries(template):
    return queries_of(template, registry=False)


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


def test_partition_projection_matches_the_layout(template):
    for registry in (False, True):
        for glue in tables_of(template, registry):
            parameters = glue["Parameters"]
            assert parameters["projection.enabled"] == "true"
            assert parameters["projection.dt.type"] == "date"
            assert parameters["projection.dt.format"] == "yyyy-MM-dd"
            assert glue["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
            keys = [c["Name"] for c in glue["PartitionKeys"]]
            location = parameters["storage.location.template"]
            if registry:
                # Every tenant is read (enum, not injected), from the list the tool keeps.
                assert keys == ["tenant", "dt"]
                assert parameters["projection.tenant.type"] == "enum"
                assert parameters["projection.tenant.values"] == NO_TENANT
                assert location.endswith("/tenant=${tenant}/dt=${dt}"), location
            else:
                assert keys == ["dt"] and not any(k.startswith("projection.tenant") for k in parameters)
                assert location.endswith("/dt=${dt}") and "tenant=" not in location, location


def test_the_views_and_queries_are_trino_sql(template):
    for registry in (False, True):
        queries = queries_of(template, registry)
        assert {"AlertsHistoryView", "AlertsLatestView", "IncidentsHistoryView", "IncidentsLatestView"} <= queries.keys()
        for name, sql in queries.items():
            assert "${" not in sql, f"{name}: a !Sub variable left in"
            sqlglot.parse_one(sql, read="trino")  # raises on anything Trino would not parse
    assert {"AlertsPerTenantPerDayQuery", "QuietTenantsQuery"} <= queries_of(template, True).keys()
    assert not {"AlertsPerTenantPerDayQuery", "QuietTenantsQuery"} & queries_of(template, False).keys()


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


def partitioned_records(data, keys):
    """Each line under `data` with its partition values, read from the folders as Athena's
    projection reads them (`tenant=<guid>/dt=<day>/`)."""
    for path in sorted(data.glob("/".join(f"{key}=*" for key in keys) + "/*.gz")):
        folders = dict(part.split("=", 1) for part in path.relative_to(data).parts[:-1])
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                yield [folders[key] for key in keys], json.loads(line)


def load_table(connection, table, data):
    """The table (`alerts`, `incidents`) as Athena sees it through Glue and the JSON SerDe."""
    serde = table["StorageDescriptor"]["SerdeInfo"]["Parameters"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    keys = [c["Name"] for c in table["PartitionKeys"]]
    definition = ", ".join(f"{name} {duckdb_type(glue_type)}" for name, glue_type in columns)
    partitions = ", ".join(f"{key} VARCHAR" for key in keys)
    connection.execute(f"CREATE TABLE {table['Name']} ({definition}, {partitions})")
    rows = [
        [serde_value(record, name, glue_type, serde) for name, glue_type in columns] + values
        for values, record in partitioned_records(data, keys)
    ]
    placeholders = ", ".join("?" for _ in range(len(columns) + len(keys)))
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


# ------------------------------------------------------------------ many tenants (Tenancy=registry)

TENANTS = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Real output of a registry-driven stack's layout: `xdr-sync simulate --tenants 3` serves
    three tenants behind one multi-tenant app, and the real `xdr-sync` syncs each of them (both
    streams) into one folder with TENANT_PARTITION on, as each tenant's invocation writes to S3."""
    root = tmp_path_factory.mktemp("fleet")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    simulator = subprocess.Popen(
        ["cargo", "run", "--quiet", "-p", "xdr-sync", "--", "simulate", "--tenants", str(TENANTS),
         "--alerts", "300", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        printed = []
        for line in simulator.stdout:
            printed.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(printed)
        app = re.search(r"client_id (\S+)\s+client_secret '([^']*)'", text)
        tenants = re.findall(r"^  ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", text, re.M)
        assert app and len(tenants) == TENANTS, text
        base = f"http://127.0.0.1:{port}"
        start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for n, tenant in enumerate(tenants):
            env = {
                **os.environ,
                "TENANT_ID": tenant, "CLIENT_ID": app.group(1), "CLIENT_SECRET": app.group(2),
                "LOGIN_BASE_URL": base, "GRAPH_BASE_URL": base, "STREAMS": "alerts,incidents",
                "TENANT_PARTITION": "true", "BACKFILL_START": start,
                "OUTPUT_DIR": str(root / "output"), "STATE_FILE": str(root / f"state-{n}" / "sync-state.json"),
            }
            subprocess.run(["cargo", "run", "--quiet", "-p", "xdr-sync", "--", "sync"],
                           cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
    return tenants, root / "output" / "defender-xdr"


@pytest.fixture(scope="module")
def fleet_athena(template, fleet):
    tenants, output = fleet
    alerts, incidents = tables_of(template, registry=True)
    queries = queries_of(template, registry=True)
    connection = duckdb.connect()
    for macro in TRINO_COMPAT:
        connection.execute(macro)
    load_table(connection, alerts, output / "alerts")
    load_table(connection, incidents, output / "incidents")
    for view in ("AlertsHistoryView", "AlertsLatestView", "IncidentsHistoryView", "IncidentsLatestView"):
        connection.execute(queries[view])
    return connection, queries


def test_a_registry_stack_reads_every_tenant_and_each_alone(template, fleet, fleet_athena):
    tenants, output = fleet
    athena, _ = fleet_athena
    alerts, _ = tables_of(template, registry=True)
    # The objects are where the table's location template says (prefix, tenant, day).
    location = alerts["Parameters"]["storage.location.template"]
    suffix = location.split("<OutputBucket>/", 1)[1]  # the prefix is OutputPrefix's default
    for path in (output / "alerts").glob("tenant=*/dt=*/*.gz"):
        folder = path.parent.relative_to(output.parent).as_posix()
        tenant, day = path.parent.parent.name[7:], path.parent.name[3:]
        assert folder == suffix.replace("${tenant}", tenant).replace("${dt}", day)
    lines = [(values, record) for values, record in partitioned_records(output / "alerts", ["tenant", "dt"])]
    by_tenant = {tenant: [r for (t, _), r in lines if t == tenant] for tenant in tenants}
    assert all(by_tenant.values()), "every tenant wrote alerts"
    # Across every tenant at once, and one tenant alone.
    assert athena.execute("SELECT count(*) FROM alerts_history").fetchone()[0] == len(lines)
    for tenant, records_ in by_tenant.items():
        distinct = len({r["id"] for r in records_})
        latest = athena.execute("SELECT count(*) FROM alerts_latest WHERE tenant = ?", [tenant]).fetchone()[0]
        assert latest == distinct
        # The folder and the record agree on whose it is.
        assert {r["tenantId"] for r in records_} == {tenant}
    # Incidents join their alerts within their tenant only.
    orphans = athena.execute(
        "SELECT count(*) FROM alerts_latest a LEFT JOIN incidents_latest i"
        " ON i.id = a.incidentid AND i.tenantid = a.tenantid WHERE i.id IS NULL"
    ).fetchone()[0]
    assert orphans == 0


def test_alerts_per_tenant_per_day_and_quiet_tenants(fleet, fleet_athena):
    tenants, output = fleet
    athena, queries = fleet_athena
    lines = list(partitioned_records(output / "alerts", ["tenant", "dt"]))
    cursor = athena.execute(queries["AlertsPerTenantPerDayQuery"])
    columns = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    assert columns == ["tenant", "dt", "new_alerts", "alert_versions"]
    since = (datetime.date.today() - datetime.timedelta(days=30)).isoformat()
    expected = {}
    for (tenant, day), record in lines:
        if day >= since:
            versions, new = expected.setdefault((tenant, day), [0, set()])
            expected[(tenant, day)][0] = versions + 1
            if record["createdDateTime"][:10] == day:
                new.add(record["id"])
    assert {(t, d): (n, v) for t, d, n, v in rows} == {k: (len(new), v) for k, (v, new) in expected.items()}
    assert {row[0] for row in rows} == set(tenants)

    newest = {}
    for stream in ("alerts", "incidents"):
        for (tenant, day), record in partitioned_records(output / stream, ["tenant", "dt"]):
            if day >= since:
                at = datetime.datetime.fromisoformat(record["lastUpdateDateTime"][:26].rstrip("Z") + "+00:00")
                newest[tenant] = max(newest.get(tenant, at), at)
    # The simulated tenants were all busy a moment ago: the query runs at a later "now", when
    # the tenant with the oldest newest data has been quiet for over an hour and the others not
    # (halfway between: the tenants' newest data may be well under a second apart).
    times = sorted(newest.values())
    assert times[1] - times[0] > datetime.timedelta(milliseconds=2), "the tenants' newest data differ"
    now = times[0] + datetime.timedelta(hours=1) + (times[1] - times[0]) / 2
    sql = queries["QuietTenantsQuery"].replace("current_timestamp", f"TIMESTAMPTZ '{now.isoformat()}'")
    quiet = {row[0] for row in athena.execute(sql).fetchall()}
    assert quiet == {tenant for tenant, at in newest.items() if at < now - datetime.timedelta(hours=1)}
    assert len(quiet) == 1
    print(f"\nAlertsPerTenantPerDayQuery: {columns}")
    for row in rows[:6]:
        print("  ", row)
    print(f"\nQuietTenantsQuery: {sorted(quiet)}")

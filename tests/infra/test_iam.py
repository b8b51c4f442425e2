"""The template grants every AWS call the functions make (infra/aws-calls.json), and nothing else.

The inventory is checked against the policies as the template deploys them, for the default
parameters and for another output prefix, with and without the customer-managed key. Whether the
code makes only these calls is shown by tests/it/iam.rs, which runs the real binaries under these
policies in a stand-in that enforces IAM (and answers 403 for a missing key without ListBucket,
as S3 does).
"""
import fnmatch
import json

import pytest

from template_policy import INVENTORY, Resolver, statements, template

NAMES = {
    "bucket": "xdr-lake-bucket",
    "table_arn": "arn:aws:dynamodb:us-east-1:123456789012:table/xdr-state",
    "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:xdr/credentials-AbCdEf",
    "tenants_table_arn": "arn:aws:dynamodb:us-east-1:123456789012:table/xdr-tenants",
}
# A per-tenant secret under the default TenantSecretsPrefix (Secrets Manager appends -XXXXXX).
TENANT_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:xdr-lake/tenants/fabrikam-AbCdEf"
# Calls Lambda and the services make with the function's role (dead-letter queue, the keys),
# not the code. No service calls kms:Encrypt with it.
PLATFORM = {"sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def as_list(value):
    return value if isinstance(value, list) else [value]


def matches(pattern, value):
    return fnmatch.fnmatchcase(value, pattern)


def prefixes(doc, output_prefix, parameters=None):
    """Where the functions write: the incidents' prefix only where the stack serves incidents."""
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    parameters = parameters or {}
    found = {
        "output": output_prefix.rstrip("/"),
        "quarantine": env["QUARANTINE_PREFIX"],
        "control": env["CONTROL_PREFIX"],
    }
    if "incidents" in parameters.get("Streams", doc["Parameters"]["Streams"]["Default"]):
        incidents = parameters.get("IncidentsPrefix", doc["Parameters"]["IncidentsPrefix"]["Default"])
        found["incidents"] = incidents.rstrip("/")
    return found


def sample_key(prefix_name, prefix):
    tail = "tenants/0f6a/sync.json" if prefix_name == "control" else "dt=2026-11-28/20261128T060000Z-ab12-00000.ndjson.gz"
    return f"{prefix}/{tail}"


def condition_holds(condition, context):
    """IAM's condition operators the template uses, for a request whose context keys are given.
    A key the request does not carry fails the condition (conservative), except under
    ForAllValues, where an absent key holds as IAM says (the template never relies on that)."""
    for operator, tests in condition.items():
        for key, patterns in tests.items():
            patterns = as_list(patterns)
            values = context.get(key)
            if operator == "ForAllValues:StringLike":
                if not all(any(matches(p, v) for p in patterns) for v in as_list(values or [])):
                    return False
            elif operator in ("StringLike", "ArnLike"):
                if values is None or not any(matches(p, values) for p in patterns):
                    return False
            elif operator == "StringEquals":
                if values is None or values not in patterns:
                    return False
            else:
                raise AssertionError(f"the test does not know the condition operator {operator}")
    return True


def granted(stmts, action, resource, s3_prefix=None, context=None):
    context = dict(context or {})
    if s3_prefix is not None:
        context["s3:prefix"] = s3_prefix
    for statement in stmts:
        if statement.get("Effect") != "Allow":
            continue
        if not any(matches(a, action) for a in as_list(statement["Action"])):
            continue
        if not any(matches(r, resource) for r in as_list(statement["Resource"])):
            continue
        condition = statement.get("Condition")
        if condition and not condition_holds(condition, context):
            continue
        return True
    return False


def inventory():
    return {k: v for k, v in json.loads(INVENTORY.read_text()).items() if not k.startswith("_")}


CASES = [
    pytest.param({}, {"UseKey": False, "ServesIncidents": False}, id="defaults"),
    pytest.param({"OutputPrefix": "lake/xdr/alerts/"}, {"UseKey": True, "ServesIncidents": False}, id="other-prefix-with-key"),
    pytest.param(
        {"Streams": "alerts,incidents", "IncidentsPrefix": "lake/xdr/incidents/"},
        {"UseKey": False, "ServesIncidents": True},
        id="with-incidents",
    ),
    pytest.param(
        {"Tenancy": "registry", "Streams": "alerts,incidents"},
        {"UseKey": False, "ServesIncidents": True, "RegistryDriven": True},
        id="many-tenants",
    ),
]


@pytest.mark.parametrize("parameters,conditions", CASES)
@pytest.mark.parametrize("function", sorted(inventory()))
def test_every_call_the_code_makes_is_granted(function, parameters, conditions):
    doc = template()
    stmts = statements(doc, function, NAMES, parameters, conditions)
    output_prefix = parameters.get("OutputPrefix", doc["Parameters"]["OutputPrefix"]["Default"])
    missing = []
    resolved_conditions = {"RegistryDriven": parameters.get("Tenancy") == "registry", **conditions}
    for call in inventory()[function]:
        action, kind = call["action"], call["resource"]
        if "only_with" in call and not resolved_conditions.get(call["only_with"]):
            continue
        if kind == "secret":
            checks = [(NAMES["secret_arn"], None)]
        elif kind == "tenant-secret":
            checks = [(TENANT_SECRET, None)]
        elif kind == "registry":
            checks = [(NAMES["tenants_table_arn"], None)]
        elif kind == "table":
            checks = [
                (NAMES["table_arn"], {"dynamodb:LeadingKeys": [key.replace("<tenant>", TENANT)]})
                for key in call["keys"]
            ]
        elif kind == "object":
            checks = [
                (f"arn:aws:s3:::{NAMES['bucket']}/{sample_key(name, prefix)}", None)
                for name, prefix in prefixes(doc, output_prefix, parameters).items()
                if name in call["prefixes"]
            ]
        elif kind == "bucket":
            # S3 decides 404 or 403 for a missing key by ListBucket on the bucket, for that key.
            checks = [
                (f"arn:aws:s3:::{NAMES['bucket']}", sample_key(name, prefix))
                for name, prefix in prefixes(doc, output_prefix, parameters).items()
                if name in call["prefixes"]
            ]
        else:
            raise AssertionError(f"unknown resource kind {kind}")
        for resource, detail in checks:
            context = detail if isinstance(detail, dict) else {}
            s3_prefix = detail if isinstance(detail, str) else None
            if not granted(stmts, action, resource, s3_prefix, context):
                missing.append(f"{action} on {resource}" + (f" ({detail})" if detail else ""))
    assert not missing, f"{function}: the template does not grant what the code calls: {missing}"


@pytest.mark.parametrize("tenancy", ["single", "registry"])
@pytest.mark.parametrize("function", sorted(inventory()))
def test_nothing_is_granted_that_no_call_needs(function, tenancy):
    stmts = statements(template(), function, NAMES, {"Tenancy": tenancy}, {"UseKey": True})
    needed = {
        call["action"]
        for call in inventory()[function]
        if "only_with" not in call or tenancy == "registry"
    } | PLATFORM
    extra = sorted(
        action
        for statement in stmts
        if statement.get("Effect") == "Allow"
        for action in as_list(statement["Action"])
        if action not in needed
    )
    assert not extra, f"{function} is granted actions no call needs: {extra}"


def test_list_bucket_is_limited_to_the_functions_own_prefixes():
    stmts = statements(template(), "SyncFunction", NAMES, {}, {"ServesIncidents": False})
    bucket = f"arn:aws:s3:::{NAMES['bucket']}"
    assert granted(stmts, "s3:ListBucket", bucket, "defender-xdr/alerts/dt=2026-11-28/x.gz")
    assert not granted(stmts, "s3:ListBucket", bucket, "other-team/secrets/x")
    assert not granted(stmts, "s3:ListBucket", bucket, None), "never unconditioned"


@pytest.mark.parametrize("function", ["SyncFunction", "BackfillFunction"])
def test_the_incidents_prefix_is_granted_only_where_incidents_are_served(function):
    key = "defender-xdr/incidents/dt=2026-11-28/x.gz"
    bucket = f"arn:aws:s3:::{NAMES['bucket']}"
    alerts_only = statements(template(), function, NAMES, {}, {"ServesIncidents": False})
    assert not granted(alerts_only, "s3:PutObject", f"{bucket}/{key}")
    assert not granted(alerts_only, "s3:ListBucket", bucket, key)
    both = statements(template(), function, NAMES, {"Streams": "alerts,incidents"}, {"ServesIncidents": True})
    assert granted(both, "s3:PutObject", f"{bucket}/{key}")
    assert granted(both, "s3:ListBucket", bucket, key)


def items(function, action, keys):
    stmts = statements(template(), function, NAMES, {}, {})
    return {key: granted(stmts, action, NAMES["table_arn"], context={"dynamodb:LeadingKeys": [key]}) for key in keys}


# Today's key scheme (shared/xdr-core/src/keys.rs: tenant GUID and stream), then the first
# release's (TENANT_ID as typed, no stream), which a run reads and leases while carrying it over.
LIVE = [f"sync#{TENANT}#alerts", f"seen#sync#{TENANT}#alerts#7-0a1b2c3d-0", f"lease#sync#{TENANT}#alerts",
        "sync#contoso.onmicrosoft.com", "seen#sync#contoso.onmicrosoft.com#7-0a-0", "lease#sync#contoso.onmicrosoft.com"]
BACKFILL = [f"backfill#{TENANT}#alerts#day#2026-11-01", f"backfill#{TENANT}#alerts#2026-11-01T00:00:00Z#open",
            f"seen#backfill#{TENANT}#alerts#day#2026-11-01#3-0a-0", f"lease#backfill#{TENANT}#alerts",
            "backfill#contoso.onmicrosoft.com#day#2026-11-01", "lease#backfill#contoso.onmicrosoft.com"]


@pytest.mark.parametrize("action", ["dynamodb:PutItem", "dynamodb:DeleteItem"])
def test_each_function_writes_only_its_own_state_items(action):
    assert items("SyncFunction", action, LIVE) == dict.fromkeys(LIVE, True)
    assert items("SyncFunction", action, BACKFILL + ["other"]) == dict.fromkeys(BACKFILL + ["other"], False)
    assert items("BackfillFunction", action, BACKFILL) == dict.fromkeys(BACKFILL, True)
    # The backfill cannot overwrite the live sync's state, its chunks or its lease.
    assert items("BackfillFunction", action, LIVE + ["other"]) == dict.fromkeys(LIVE + ["other"], False)


def test_the_backfill_reads_the_live_state_but_not_its_lease():
    read = items("BackfillFunction", "dynamodb:GetItem", LIVE + BACKFILL)
    leases = {key: False for key in LIVE if key.startswith("lease#")}
    assert read == {**dict.fromkeys(LIVE + BACKFILL, True), **leases}
    assert items("SyncFunction", "dynamodb:GetItem", BACKFILL) == dict.fromkeys(BACKFILL, False)


def test_the_key_is_kept_like_the_data_it_encrypts():
    resources = template()["Resources"]
    for name in ["Key", "OutputBucket", "StateTable", "TenantsTable"]:
        assert resources[name].get("DeletionPolicy") == "Retain", name
        assert resources[name].get("UpdateReplacePolicy") == "Retain", name


@pytest.mark.parametrize("function", sorted(inventory()))
def test_existing_bucket_and_secret_keys_are_granted_through_their_service_only(function):
    bucket_key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    secret_key = "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
    parameters = {"ExistingBucketKmsKeyArn": bucket_key, "ExistingSecretKmsKeyArn": secret_key}
    stmts = statements(template(), function, NAMES, parameters, {"CreateBucket": False, "CreateSecret": False})
    via = lambda service: {"kms:ViaService": f"{service}.us-east-1.amazonaws.com"}  # noqa: E731
    assert granted(stmts, "kms:GenerateDataKey", bucket_key, context=via("s3"))
    assert granted(stmts, "kms:Decrypt", bucket_key, context=via("s3"))
    assert granted(stmts, "kms:Decrypt", secret_key, context=via("secretsmanager"))
    assert not granted(stmts, "kms:Decrypt", secret_key, context=via("s3")), "only through Secrets Manager"
    assert not granted(stmts, "kms:Decrypt", bucket_key, context={}), "only through S3"
    # Without the parameters, no statement names another key.
    plain = statements(template(), function, NAMES, {}, {})
    assert not any("kms" in str(statement.get("Action")) for statement in plain)


def test_the_stack_key_grants_only_what_each_service_documents():
    stmts = statements(template(), "SyncFunction", NAMES, {}, {"UseKey": True})
    actions = {a for s in stmts if "kms" in str(s["Action"]) for a in as_list(s["Action"])}
    assert actions == {"kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"}, actions
    doc = template()
    resolved = statements_of_key(doc)
    cloudwatch = next(s for s in resolved if s.get("Sid") == "AlarmsPublishToEncryptedTopic")
    assert cloudwatch["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"].startswith("arn:aws:cloudwatch:us-east-1:123456789012:alarm:")
    for statement in resolved:
        principal = statement["Principal"]
        if "Service" in principal:
            assert statement.get("Condition"), f"{statement['Sid']}: a service principal without a condition"


def statements_of_key(doc):
    from template_policy import Resolver

    resolve = Resolver(doc, NAMES, {}, {"UseKey": True})
    return resolve(doc["Resources"]["Key"]["Properties"]["KeyPolicy"]["Statement"])


def test_quarantined_records_expire():
    doc = template()
    quarantine = doc["Globals"]["Function"]["Environment"]["Variables"]["QUARANTINE_PREFIX"]
    rules = doc["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    rule = next((r for r in rules if r.get("Prefix") == f"{quarantine}/"), None)
    assert rule is not None, "no lifecycle rule for the quarantine prefix"
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"!Ref": "QuarantineExpirationDays"}
    assert doc["Parameters"]["QuarantineExpirationDays"]["Default"] <= 90


@pytest.mark.parametrize("function", ["SyncFunction", "BackfillFunction"])
def test_the_registry_and_tenant_secrets_are_readable_only_in_a_registry_driven_stack(function):
    single = statements(template(), function, NAMES, {}, {})
    assert not granted(single, "dynamodb:GetItem", NAMES["tenants_table_arn"])
    assert not granted(single, "secretsmanager:GetSecretValue", TENANT_SECRET)
    many = statements(template(), function, NAMES, {"Tenancy": "registry"}, {})
    assert granted(many, "dynamodb:GetItem", NAMES["tenants_table_arn"])
    assert granted(many, "secretsmanager:GetSecretValue", TENANT_SECRET)
    # Only secrets under the prefix, and the registry is never written by the functions.
    other = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payroll/db-AbCdEf"
    assert not granted(many, "secretsmanager:GetSecretValue", other)
    for action in ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]:
        assert not granted(many, action, NAMES["tenants_table_arn"])
    # Only the sync lists the registry (the fan-out's list and report).
    assert granted(many, "dynamodb:Scan", NAMES["tenants_table_arn"]) == (function == "SyncFunction")


def test_the_fan_out_runs_only_in_a_registry_driven_stack_and_replaces_the_single_schedule():
    doc = template()
    resources = doc["Resources"]
    for name in ["TenantsTable", "FanOutStateMachine", "FanOutSchedule", "FanOutRole", "StaleTenantsAlarm"]:
        assert resources[name].get("Condition") == "RegistryDriven", name
    sync = resources["SyncFunction"]["Properties"]
    assert sync["Events"]["Schedule"]["Properties"]["State"] == {"!If": ["SingleTenant", "ENABLED", "DISABLED"]}
    assert sync["ReservedConcurrentExecutions"] == {"!If": ["SingleTenant", 1, {"!Ref": "AWS::NoValue"}]}
    states = resources["FanOutStateMachine"]["Properties"]["Definition"]["States"]
    each = states["SyncEachTenant"]
    assert each["ToleratedFailurePercentage"] == 100, "one tenant's failure never fails the fan-out"
    task = each["ItemProcessor"]["States"]["SyncTenant"]
    assert task["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert task["Parameters"]["Payload"] == {"tenant.$": "$.tenant"}
    assert states["ListTenants"]["Parameters"]["Payload"] == {"fan_out": "list"}
    assert states["Report"]["Parameters"]["Payload"] == {"fan_out": "report", "results.$": "$.map.ResultWriterDetails"}
    assert each["ResultPath"] == "$.map"
    alarm = resources["StaleTenantsAlarm"]["Properties"]
    assert alarm["MetricName"] == "StaleTenants" and alarm["TreatMissingData"] == "breaching"


def test_the_fan_outs_results_go_where_the_report_reads_them_and_nowhere_else():
    """The Map writes its tenants' results to S3 (a state holds 256 KB): under the control
    prefix of the function's bucket, which the sync reads (and its report checks), with the
    writer permissions Step Functions documents, for that prefix only; kept 7 days."""
    doc = template()
    resources = doc["Resources"]
    each = resources["FanOutStateMachine"]["Properties"]["Definition"]["States"]["SyncEachTenant"]
    writer = Resolver(doc, NAMES, {"Tenancy": "registry"})(each["ResultWriter"])
    control = doc["Globals"]["Function"]["Environment"]["Variables"]["CONTROL_PREFIX"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"] == {"Bucket": NAMES["bucket"], "Prefix": f"{control}/fan-out"}
    key = f"{control}/fan-out/3f2a/SUCCEEDED_0.json"
    role = Resolver(doc, NAMES, {"Tenancy": "registry"})([
        statement
        for statement in resources["FanOutRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if isinstance(statement, dict) and statement.get("Sid") not in ("InvokeSync",)
    ])
    for action in ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"]:
        assert granted(role, action, f"arn:aws:s3:::{NAMES['bucket']}/{key}"), action
        assert not granted(role, action, f"arn:aws:s3:::{NAMES['bucket']}/defender-xdr/alerts/dt=2026-11-28/x.gz"), action
    sync = statements(doc, "SyncFunction", NAMES, {"Tenancy": "registry"}, {})
    assert granted(sync, "s3:GetObject", f"arn:aws:s3:::{NAMES['bucket']}/{key}")
    rules = {r["Id"]: r for r in resources["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-fan-out-results"]["Prefix"] == f"{control}/fan-out/"
    assert rules["expire-fan-out-results"]["ExpirationInDays"] <= 7

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

from template_policy import INVENTORY, statements, template

NAMES = {
    "bucket": "xdr-lake-bucket",
    "table_arn": "arn:aws:dynamodb:us-east-1:123456789012:table/xdr-state",
    "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:xdr/credentials-AbCdEf",
}
# Calls Lambda itself makes with the function's role (dead-letter queue, the key), not the code.
PLATFORM = {"sqs:SendMessage", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}


def as_list(value):
    return value if isinstance(value, list) else [value]


def matches(pattern, value):
    return fnmatch.fnmatchcase(value, pattern)


def prefixes(doc, output_prefix):
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    return {
        "output": output_prefix.rstrip("/"),
        "quarantine": env["QUARANTINE_PREFIX"],
        "control": env["CONTROL_PREFIX"],
    }


def sample_key(prefix_name, prefix):
    tail = "tenants/0f6a/sync.json" if prefix_name == "control" else "dt=2026-11-28/20261128T060000Z-ab12-00000.ndjson.gz"
    return f"{prefix}/{tail}"


def granted(stmts, action, resource, s3_prefix=None):
    for statement in stmts:
        if statement.get("Effect") != "Allow":
            continue
        if not any(matches(a, action) for a in as_list(statement["Action"])):
            continue
        if not any(matches(r, resource) for r in as_list(statement["Resource"])):
            continue
        condition = statement.get("Condition")
        if condition:
            allowed = as_list(condition.get("StringLike", {}).get("s3:prefix", []))
            if s3_prefix is None or not any(matches(p, s3_prefix) for p in allowed):
                continue
        return True
    return False


def inventory():
    return {k: v for k, v in json.loads(INVENTORY.read_text()).items() if not k.startswith("_")}


CASES = [
    pytest.param({}, {"UseKey": False}, id="defaults"),
    pytest.param({"OutputPrefix": "lake/xdr/alerts/"}, {"UseKey": True}, id="other-prefix-with-key"),
]


@pytest.mark.parametrize("parameters,conditions", CASES)
@pytest.mark.parametrize("function", sorted(inventory()))
def test_every_call_the_code_makes_is_granted(function, parameters, conditions):
    doc = template()
    stmts = statements(doc, function, NAMES, parameters, conditions)
    output_prefix = parameters.get("OutputPrefix", doc["Parameters"]["OutputPrefix"]["Default"])
    missing = []
    for call in inventory()[function]:
        action, kind = call["action"], call["resource"]
        if kind == "secret":
            checks = [(NAMES["secret_arn"], None)]
        elif kind == "table":
            checks = [(NAMES["table_arn"], None)]
        elif kind == "object":
            checks = [
                (f"arn:aws:s3:::{NAMES['bucket']}/{sample_key(name, prefix)}", None)
                for name, prefix in prefixes(doc, output_prefix).items()
                if name in call["prefixes"]
            ]
        elif kind == "bucket":
            # S3 decides 404 or 403 for a missing key by ListBucket on the bucket, for that key.
            checks = [
                (f"arn:aws:s3:::{NAMES['bucket']}", sample_key(name, prefix))
                for name, prefix in prefixes(doc, output_prefix).items()
                if name in call["prefixes"]
            ]
        else:
            raise AssertionError(f"unknown resource kind {kind}")
        for resource, s3_prefix in checks:
            if not granted(stmts, action, resource, s3_prefix):
                missing.append(f"{action} on {resource}" + (f" (prefix {s3_prefix})" if s3_prefix else ""))
    assert not missing, f"{function}: the template does not grant what the code calls: {missing}"


@pytest.mark.parametrize("function", sorted(inventory()))
def test_nothing_is_granted_that_no_call_needs(function):
    stmts = statements(template(), function, NAMES, {}, {"UseKey": True})
    needed = {call["action"] for call in inventory()[function]} | PLATFORM
    extra = sorted(
        action
        for statement in stmts
        if statement.get("Effect") == "Allow"
        for action in as_list(statement["Action"])
        if action not in needed
    )
    assert not extra, f"{function} is granted actions no call needs: {extra}"


def test_list_bucket_is_limited_to_the_functions_own_prefixes():
    stmts = statements(template(), "SyncFunction", NAMES, {}, {})
    bucket = f"arn:aws:s3:::{NAMES['bucket']}"
    assert granted(stmts, "s3:ListBucket", bucket, "defender-xdr/alerts/dt=2026-11-28/x.gz")
    assert not granted(stmts, "s3:ListBucket", bucket, "other-team/secrets/x")
    assert not granted(stmts, "s3:ListBucket", bucket, None), "never unconditioned"

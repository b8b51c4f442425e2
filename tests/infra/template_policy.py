"""The functions' IAM policies as the template deploys them, resolved for concrete names.

Used by tests/infra/test_iam.py (the inventory check) and by the Rust end-to-end test
tests/it/iam.rs, which runs the functions under exactly these policies in an IAM-enforcing stand-in:

    python tests/infra/template_policy.py SyncFunction --bucket B --table-arn A --secret-arn S [--without-sid X] [--parameter Streams=alerts,incidents] [--parameter Tenancy=registry --tenants-table-arn T]
"""
import argparse
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
INVENTORY = ROOT / "infra" / "aws-calls.json"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags kept as {"!Tag": value}."""


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}


CfnLoader.add_multi_constructor("!", _any_tag)


def template():
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def defaults(doc):
    return {name: str(p.get("Default", "")) for name, p in doc.get("Parameters", {}).items()}


class Resolver:
    """Evaluates the intrinsic functions the policies use, for one set of names."""

    def __init__(self, doc, names, parameters=None, conditions=None):
        self.doc = doc
        self.names = names  # bucket, table_arn, secret_arn, key_arn
        self.parameters = {**defaults(doc), **(parameters or {})}
        self.conditions = {
            "CreateBucket": True, "CreateSecret": True, "UseKey": False,
            "HasExistingBucketKey": bool(self.parameters.get("ExistingBucketKmsKeyArn")),
            "HasExistingSecretKey": bool(self.parameters.get("ExistingSecretKmsKeyArn")),
            "ServesIncidents": self.parameters.get("Streams", "alerts") != "alerts",
            "RegistryDriven": self.parameters.get("Tenancy", "single") == "registry",
            **(conditions or {}),
        }
        self.conditions.setdefault("SingleTenant", not self.conditions["RegistryDriven"])
        self.refs = {
            "AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
            "AWS::StackName": "xdr", "AWS::NoValue": None,
            "OutputBucket": names["bucket"], "ExistingBucketName": names["bucket"],
            "CredentialsSecret": names["secret_arn"], "ExistingSecretArn": names["secret_arn"],
        }
        self.attributes = {"StateTable.Arn": names["table_arn"],
                           "TenantsTable.Arn": names.get("tenants_table_arn", "arn:aws:dynamodb:us-east-1:123456789012:table/xdr-tenants"),
                           "Key.Arn": names.get("key_arn", "arn:aws:kms:us-east-1:123456789012:key/k"),
                           "FailureQueue.Arn": "arn:aws:sqs:us-east-1:123456789012:xdr-failures"}

    def ref(self, name):
        if name in self.refs:
            return self.refs[name]
        return self.parameters[name]

    def __call__(self, node):
        if isinstance(node, list):
            return [v for v in (self(item) for item in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (tag, value), = node.items()
            if tag in ("!Ref", "Ref"):
                return self.ref(value)
            if tag in ("!GetAtt", "Fn::GetAtt"):
                return self.attributes[value if isinstance(value, str) else ".".join(value)]
            if tag in ("!If", "Fn::If"):
                condition, yes, no = value
                return self(yes if self.conditions[condition] else no)
            if tag in ("!Sub", "Fn::Sub"):
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                variables = {k: self(v) for k, v in variables.items()}

                def substitute(match):
                    name = match.group(1)
                    if name.startswith("!"):
                        return "${" + name[1:] + "}"
                    return str(variables[name] if name in variables else self.ref(name))

                return re.sub(r"\$\{([^}]+)\}", substitute, text)
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not None}


def statements(doc, function, names, parameters=None, conditions=None):
    """The function's policy statements, resolved."""
    resolve = Resolver(doc, names, parameters, conditions)
    found = []
    for policy in doc["Resources"][function]["Properties"]["Policies"]:
        found.extend(resolve(policy["Statement"]))
    return found


def policy_document(function, names, without_sids=(), parameters=None):
    kept = [s for s in statements(template(), function, names, parameters) if s.get("Sid") not in without_sids]
    return {"Version": "2012-10-17", "Statement": kept}


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("function")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--table-arn", required=True)
    parser.add_argument("--secret-arn", required=True)
    parser.add_argument("--tenants-table-arn", help="the tenant registry (with --parameter Tenancy=registry)")
    parser.add_argument("--without-sid", action="append", default=[])
    parser.add_argument("--parameter", action="append", default=[], help="NAME=VALUE, a template parameter")
    args = parser.parse_args(argv)
    names = {"bucket": args.bucket, "table_arn": args.table_arn, "secret_arn": args.secret_arn}
    if args.tenants_table_arn:
        names["tenants_table_arn"] = args.tenants_table_arn
    parameters = dict(item.split("=", 1) for item in args.parameter)
    print(json.dumps(policy_document(args.function, names, args.without_sid, parameters)))


if __name__ == "__main__":
    main(sys.argv[1:])

"""terraform/: no Terraform binary runs here, so this checks what can be checked without one:
every .tf file parses (python-hcl2); every reference resolves and every module call matches the
module's variables (a small `terraform validate`); variables are typed, described and validated;
the DynamoDB tables equal lvp/tables.py; each ECS task definition sets every variable its service
reads (lvp/service_env.py), secrets from Secrets Manager; the task roles are least-privilege; and
checkov passes (scripts/checkov.sh, from its own tools venv)."""

from __future__ import annotations

import functools
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import hcl2
import pytest

from lvp.cli import build_parser
from lvp.config import SETTINGS, Settings
from lvp.service_env import LOCAL_ONLY_ENV, SERVICE_ENV, SERVICE_SETTINGS, secret_env
from lvp.tables import TTL_ATTRIBUTE, table_definitions

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
MODULE_DIRS = [TF, *sorted(p for p in (TF / "modules").iterdir() if p.is_dir())]
TF_FILES = sorted(TF.rglob("*.tf"))
META_ARGS = {"source", "count", "for_each", "depends_on", "providers", "version"}
DEPLOYED = ("collector", "profiles", "viewer")


# --- loading -------------------------------------------------------------------------------------------
def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def norm(obj: Any) -> Any:
    """python-hcl2 output without its quoting and bookkeeping keys."""
    if isinstance(obj, dict):
        return {unquote(k): norm(v) for k, v in obj.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(obj, list):
        return [norm(x) for x in obj]
    return unquote(obj)


@functools.cache
def load_module(directory: Path) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = defaultdict(list)
    for path in sorted(directory.glob("*.tf")):
        with path.open() as fh:
            for key, blocks in hcl2.load(fh).items():
                merged[key].extend(norm(blocks))
    return dict(merged)


def named(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """`variable`/`output`/`module` blocks -> name -> body."""
    return {name: body for block in blocks for name, body in block.items()}


def typed(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`resource`/`data` blocks -> "type.name" -> body."""
    return {
        f"{t}.{n}": body for block in blocks for t, by_name in block.items() for n, body in by_name.items()
    }


def locals_of(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in load_module(directory).get("locals", []):
        out.update(block)
    return out


def strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [k, *strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return [obj] if isinstance(obj, str) else []


def expressions(text: str) -> list[str]:
    """The `${...}` parts of a parsed value (braces balanced)."""
    out, i = [], text.find("${")
    while i != -1:
        depth, j = 0, i + 1
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        out.append(text[i + 2 : j])
        i = text.find("${", j)
    return out


@pytest.fixture(scope="module")
def root() -> dict[str, list[Any]]:
    return load_module(TF)


@pytest.fixture(scope="module")
def variables(root: dict[str, list[Any]]) -> dict[str, Any]:
    return named(root["variable"])


# --- parsing and a small validate ------------------------------------------------------------------------
@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TF)))
def test_tf_file_parses(path: Path) -> None:
    with path.open() as fh:
        assert isinstance(hcl2.load(fh), dict)


def test_layout() -> None:
    assert {p.name for p in TF.glob("*.tf")} >= {"versions.tf", "variables.tf", "outputs.tf"}
    for module in MODULE_DIRS[1:]:
        assert {"main.tf", "variables.tf", "outputs.tf"} <= {p.name for p in module.glob("*.tf")}, module


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda p: p.name)
def test_references_resolve(directory: Path) -> None:
    mod = load_module(directory)
    variables = set(named(mod.get("variable", [])))
    local_names = set(locals_of(directory))
    resources = set(typed(mod.get("resource", [])))
    data = set(typed(mod.get("data", [])))
    modules = named(mod.get("module", []))
    problems = []
    for text in strings(mod):
        for expr in expressions(text):
            for name in re.findall(r"(?<![\w.])var\.([A-Za-z_][\w-]*)", expr):
                if name not in variables:
                    problems.append(f"undeclared var.{name}")
            for name in re.findall(r"(?<![\w.])local\.([A-Za-z_][\w-]*)", expr):
                if name not in local_names:
                    problems.append(f"undefined local.{name}")
            for t, n in re.findall(r"(?<![\w.])data\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)", expr):
                if f"{t}.{n}" not in data:
                    problems.append(f"undefined data.{t}.{n}")
            for t, n in re.findall(r"(?<![\w.])((?:aws|random)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)", expr):
                if f"{t}.{n}" not in resources:
                    problems.append(f"undefined resource {t}.{n}")
            for m, out in re.findall(
                r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?\.([A-Za-z_][\w-]*)", expr
            ):
                if m not in modules:
                    problems.append(f"undefined module.{m}")
                    continue
                outputs = named(load_module((directory / modules[m]["source"]).resolve()).get("output", []))
                if out not in outputs:
                    problems.append(f"module.{m} has no output {out}")
    assert not problems, sorted(set(problems))


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda p: p.name)
def test_module_calls_match_module_variables(directory: Path) -> None:
    for name, call in named(load_module(directory).get("module", [])).items():
        source = (directory / call["source"]).resolve()
        assert source.is_dir() and source.parent == TF / "modules", f"module {name}: local modules only"
        declared = named(load_module(source)["variable"])
        given = set(call) - META_ARGS
        assert given <= set(declared), f"module {name}: unknown inputs {given - set(declared)}"
        required = {v for v, body in declared.items() if "default" not in body}
        assert required <= given, f"module {name}: missing inputs {required - given}"


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=lambda p: p.name)
def test_variables_are_typed_described_and_validated(directory: Path) -> None:
    for name, body in named(load_module(directory).get("variable", [])).items():
        assert body.get("type"), f"variable {name}: no type"
        assert len(body.get("description", "")) > 10, f"variable {name}: no description"
        if directory == TF and body["type"] != "bool":
            assert body.get("validation"), f"variable {name}: no validation"
    for name, body in named(load_module(directory).get("output", [])).items():
        assert body.get("description"), f"output {name}: no description"


def test_outputs_give_the_urls(root: dict[str, list[Any]]) -> None:
    outputs = named(root["output"])
    for url in ("collector_url", "viewer_url"):
        assert "https" in outputs[url]["value"] and "aws_lb.this" in outputs[url]["value"]
    assert {"ecr_repository_url", "msk_bootstrap_brokers", "topics_run_task_command"} <= set(outputs)


def test_checkov_skips_are_justified() -> None:
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                m = re.search(r"#checkov:skip=(CKV2?_[A-Z0-9]+_\d+):(.+)$", line)
                assert m and len(m.group(2).strip()) >= 30, f"{path.name}: unjustified skip: {line.strip()}"


# --- DynamoDB ------------------------------------------------------------------------------------------
def test_dynamodb_tables_equal_the_code_definitions(root: dict[str, list[Any]]) -> None:
    tables = {k: v for k, v in typed(root["resource"]).items() if k.startswith("aws_dynamodb_table.")}
    assert len(tables) == len(table_definitions())
    for want in table_definitions():
        matches = [t for t in tables.values() if t["name"].endswith(want["TableName"])]
        assert len(matches) == 1, f"no terraform table for {want['TableName']}"
        got = matches[0]
        keys = {k["KeyType"]: k["AttributeName"] for k in want["KeySchema"]}
        assert got["hash_key"] == keys["HASH"]
        assert got.get("range_key") == keys.get("RANGE")
        assert sorted((a["name"], a["type"]) for a in got["attribute"]) == sorted(
            (a["AttributeName"], a["AttributeType"]) for a in want["AttributeDefinitions"]
        )
        want_gsis = {
            g["IndexName"]: (
                {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]},
                g["Projection"]["ProjectionType"],
            )
            for g in want.get("GlobalSecondaryIndexes", [])
        }
        got_gsis = {
            g["name"]: (
                {"HASH": g["hash_key"], **({"RANGE": g["range_key"]} if "range_key" in g else {})},
                g["projection_type"],
            )
            for g in got.get("global_secondary_index", [])
        }
        assert got_gsis == want_gsis
        assert got["billing_mode"] == want["BillingMode"] == "PAY_PER_REQUEST"
        assert got["ttl"] == [{"attribute_name": TTL_ATTRIBUTE, "enabled": True}]
        assert got["point_in_time_recovery"] == [{"enabled": True}]
        assert got["server_side_encryption"][0]["enabled"] is True
        assert "kms_key_arn" in got["server_side_encryption"][0]


# --- ECS task definitions --------------------------------------------------------------------------------
def resolve(value: Any, variables: dict[str, Any]) -> str:
    """A task definition value as the container would see it: variable defaults are filled in,
    other references (ARNs, endpoints) become a placeholder string."""
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, str):
        return str(value)
    m = re.fullmatch(r"\$\{(?:tostring\()?var\.(\w+)((?:\.\w+)*)\)?\}", value)
    if m:
        default = variables[m.group(1)]["default"]
        for attr in filter(None, m.group(2).split(".")):
            default = default[attr]
        return resolve(default, variables)
    m = re.fullmatch(r"\$\{tostring\(local\.(\w+)\)\}", value)
    if m:
        expr = locals_of(TF)[m.group(1)]
        if isinstance(expr, int | float) or (
            isinstance(expr, str) and '"' not in expr and re.search(r"\d", expr)
        ):
            return "1"  # a numeric expression (conditionals, min/max of numbers)
    return "terraform-reference" if value.startswith("${") else value


def test_every_service_gets_every_setting_it_reads(
    root: dict[str, list[Any]], variables: dict[str, Any]
) -> None:
    local = locals_of(TF)
    environments, secrets = local["service_environment"], local["service_secrets"]
    assert set(environments) == set(secrets) == set(SERVICE_ENV)
    for service in SERVICE_ENV:
        env, sec = environments[service], secrets[service]
        missing = set(SERVICE_ENV[service]) - set(env) - set(sec)
        assert not missing, f"{service}: task definition does not set {sorted(missing)}"
        assert set(sec) == set(secret_env(service)), f"{service}: secrets must come from Secrets Manager"
        assert not set(env) & set(secret_env(service)), f"{service}: a secret in plain environment"
        assert not set(env) & set(LOCAL_ONLY_ENV), f"{service}: local-only settings must stay unset on AWS"
        for arn in sec.values():
            assert arn.startswith("${aws_secretsmanager_secret.this["), arn
        # MSK IAM for every Kafka client
        assert (env["LVP_KAFKA_MSK_IAM"], env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == (
            "true", "SASL_SSL", "OAUTHBEARER",
        )  # fmt: skip
        # the values have the types the settings need
        resolved = {k: resolve(v, variables) for k, v in env.items()}
        resolved.update({k: "secret-from-secrets-manager" for k in sec})
        Settings.from_env(resolved)
        for setting in SERVICE_SETTINGS[service]:
            field = Settings.__dataclass_fields__[setting]
            if field.type not in ("str", str):
                assert resolved[field.metadata["env"]] != "terraform-reference", setting


def test_task_definitions_use_the_service_maps(root: dict[str, list[Any]]) -> None:
    parser = build_parser()
    calls = named(root["module"])
    for service in SERVICE_ENV:
        call = calls[service]
        assert f'local.service_environment["{service}"]' in call["environment"]
        assert call["secrets"] == f'${{local.service_secrets["{service}"]}}'
        assert call["task_policy_json"] == f"${{data.aws_iam_policy_document.{service}.json}}"
        assert callable(parser.parse_args(call["command"]).func), f"{service}: not an lvp command"
        assert call["command"][0] == service
    for service in DEPLOYED:
        assert calls[service].get("create_service", True) is True
    assert calls["topics"]["create_service"] is False
    module = load_module(TF / "modules" / "ecs_service")
    container = locals_of(TF / "modules" / "ecs_service")["container_definition"]
    assert "var.environment" in container["environment"] and "var.secrets" in container["secrets"]
    assert container["readonlyRootFilesystem"] is True and container["privileged"] is False
    assert container["user"] != "0" and not container["user"].startswith("root")
    task = typed(module["resource"])["aws_ecs_task_definition.this"]
    assert "local.container_definition" in task["container_definitions"]
    assert task["execution_role_arn"] != task["task_role_arn"]


def test_health_checks_probe_the_service_ports(root: dict[str, list[Any]]) -> None:
    calls = named(root["module"])
    env = locals_of(TF)["service_environment"]
    ports = {
        "collector": env["collector"]["LVP_COLLECTOR_PORT"],
        "profiles": env["profiles"]["LVP_PROFILES_METRICS_PORT"],
        "viewer": env["viewer"]["LVP_VIEWER_PORT"],
    }
    for service, port in ports.items():
        assert f"127.0.0.1:{port}/" in calls[service]["health_check_url"]
        if "container_port" in calls[service]:
            assert str(calls[service]["container_port"]) == port


# --- IAM -------------------------------------------------------------------------------------------------
def policy_actions(root: dict[str, list[Any]], name: str) -> list[tuple[set[str], list[str]]]:
    doc = typed(root["data"])[f"aws_iam_policy_document.{name}"]
    return [
        (set(s["actions"]), s["resources"] if isinstance(s["resources"], list) else [s["resources"]])
        for s in doc["statement"]
    ]


DYNAMODB_READ = {"dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}


def test_task_roles_are_least_privilege(root: dict[str, list[Any]]) -> None:
    for service in SERVICE_ENV:
        for statement_actions, resources in policy_actions(root, service):
            assert all("*" not in a for a in statement_actions), f"{service}: wildcard in {statement_actions}"
            assert all(r != "*" for r in resources), f"{service}: unrestricted resource"
    actions = {s: set().union(*(a for a, _ in policy_actions(root, s))) for s in SERVICE_ENV}
    assert not {a for a in actions["collector"] if a.startswith("dynamodb:")}, "collector needs no DynamoDB"
    for statement_actions, resources in policy_actions(root, "viewer"):
        writes = {a for a in statement_actions if a.startswith("dynamodb:")} - DYNAMODB_READ
        # the viewer reads profiles/history and writes only its shared state (privacy budget, tickets)
        assert not writes or resources == ["${aws_dynamodb_table.viewer_state.arn}"], resources
        assert writes <= {"dynamodb:PutItem", "dynamodb:UpdateItem"}, writes
    assert "kafka-cluster:WriteData" not in actions["viewer"]
    assert "kafka-cluster:ReadData" not in actions["collector"]
    assert not {a for a in actions["topics"] if a.startswith("dynamodb:")}
    assert "kafka-cluster:CreateTopic" in actions["topics"]
    for service in DEPLOYED:
        assert "kafka-cluster:CreateTopic" not in actions[service]
    assert {"dynamodb:BatchWriteItem", "kafka-cluster:AlterGroup"} <= actions["profiles"]


def test_msk_uses_iam_auth(root: dict[str, list[Any]], variables: dict[str, Any]) -> None:
    resources = typed(root["resource"])
    serverless = resources["aws_msk_serverless_cluster.this"]
    assert serverless["client_authentication"][0]["sasl"][0]["iam"][0]["enabled"] is True
    provisioned = resources["aws_msk_cluster.this"]
    auth = provisioned["client_authentication"][0]
    assert auth["sasl"][0]["iam"] is True and auth["unauthenticated"] is False
    assert provisioned["encryption_info"][0]["encryption_in_transit"][0]["client_broker"] == "TLS"
    assert variables["msk_mode"]["default"] == "serverless"


def test_viewer_load_balancer_keeps_sse_streams_open(variables: dict[str, Any]) -> None:
    lb = locals_of(TF)["load_balanced"]
    assert lb["viewer"]["idle_timeout"] == "${var.viewer_idle_timeout_s}"
    assert variables["viewer_idle_timeout_s"]["default"] >= 3600
    assert lb["collector"]["idle_timeout"] <= 120


# --- checkov -----------------------------------------------------------------------------------------------
@pytest.mark.slow  # bootstraps checkov's own venv, then scans every .tf file (about a minute)
def test_checkov_passes(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "checkov.sh"
    boot = subprocess.run(
        ["bash", str(script), "--bootstrap-only"], capture_output=True, text=True, timeout=900
    )
    if boot.returncode != 0:
        reach = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "index", "versions", "checkov"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if reach.returncode != 0:
            pytest.skip("PyPI is unreachable: cannot install checkov")
        pytest.fail(f"checkov could not be installed:\n{boot.stderr[-3000:]}")
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"checkov failed:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert "terraform scan results" in run.stdout and "dockerfile scan results" in run.stdout
    assert not re.search(r"Failed checks: [1-9]", run.stdout)


# --- IAM: every task role against what its service reads and writes ------------------------------------
# What each service does with Kafka, by the settings that name the topics and groups. Every entry is
# checked against the code below (the settings the service reads, the clients it builds, the group
# ids it forms); DynamoDB needs are derived from the code and the task definitions alone.
KAFKA_NEEDS: dict[str, dict[str, Any]] = {
    "collector": {"produce": {"LVP_TOPIC_GOOD", "LVP_TOPIC_BAD"}, "consume": set(), "groups": set()},
    "profiles": {
        "produce": {"LVP_TOPIC_CHANGES", "LVP_TOPIC_BAD"},
        # good events through the group; the changes topic by the erasure reader (tombstones)
        "consume": {"LVP_TOPIC_GOOD", "LVP_TOPIC_CHANGES"},
        "groups": {"{LVP_CONSUMER_GROUP}", "{LVP_CONSUMER_GROUP}-erasures"},
    },
    # assigned partitions, random never-committed group ids lvp-viewer-<random>
    "viewer": {"produce": set(), "consume": {"LVP_TOPIC_CHANGES"}, "groups": {"lvp-viewer-*"}},
    "topics": {
        "produce": set(),
        "consume": set(),
        "groups": set(),
        "create": {"LVP_TOPIC_GOOD", "LVP_TOPIC_BAD", "LVP_TOPIC_CHANGES"},
        "alter_config": {"LVP_TOPIC_CHANGES"},  # the changes topic's retention (lvp.kafka)
    },
}
CLUSTER = "cluster"
PRODUCE = {"kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"}
CONSUME = {"kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"}
# MSK: ReadData through a group needs DescribeGroup and AlterGroup on it
GROUP = {"kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"}
CREATE = {
    "kafka-cluster:CreateTopic",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:DescribeTopicDynamicConfiguration",
}
DYNAMODB_OPERATIONS = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "query": "Query",
    "scan": "Scan",
    "batch_get_item": "BatchGetItem",
    "batch_write_item": "BatchWriteItem",
    "describe_table": "DescribeTable",
    "transact_write_items": "TransactWriteItems",
    "transact_get_items": "TransactGetItems",
}
# the settings that name a topic (LVP_TOPIC_GOOD, ...; not the partition count)
TOPIC_NAME_ENVS = {
    f.metadata["env"]
    for f in SETTINGS
    if f.metadata["env"].startswith("LVP_TOPIC_") and isinstance(f.default, str)
}
KNOWN_LOCALS = {"msk_cluster_arn", "topic_arns", "msk_group_arn_prefix", "msk_topic_arn_prefix"}


def package_sources(service: str) -> list[Path]:
    package = ROOT / service
    return list(package.rglob("*.py")) if package.is_dir() else []


#: Modules outside a service's package that make DynamoDB calls for it.
SHARED_DYNAMODB_MODULES: dict[str, list[str]] = {}


def dynamodb_calls(service: str) -> tuple[dict[str | None, set[str]], bool]:
    """The DynamoDB operations a service calls (boto3/aioboto3 client methods, and the operation
    names profiles/store.py passes to its `_call` / DynamoHttp `call`), by the setting that names
    the table: the call's own (``TableName=self.settings.table_x`` -> ``"table_x"``), else every
    table setting its module names, else None (any table of the task); and whether it queries an
    index."""
    import ast

    ops: dict[str | None, set[str]] = {}
    index = False
    camel = set(DYNAMODB_OPERATIONS.values())
    paths = package_sources(service) + [ROOT / m for m in SHARED_DYNAMODB_MODULES.get(service, [])]
    for path in paths:
        tree = ast.parse(path.read_text())
        # a call that does not name its table uses one of the tables its module names
        named = {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("table_")
        }
        # a call with **params takes its table from the "TableName" of a dict in its function
        in_dict: dict[int, str] = {}
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            keys = [
                v.attr
                for d in ast.walk(fn)
                if isinstance(d, ast.Dict)
                for k, v in zip(d.keys, d.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "TableName" and isinstance(v, ast.Attribute)
            ]
            if len(keys) == 1:
                for call in ast.walk(fn):
                    if isinstance(call, ast.Call) and any(kw.arg is None for kw in call.keywords):
                        in_dict[id(call)] = keys[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "IndexName":
                index = True
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            attr = node.func.attr
            op: str | None = None
            if attr in DYNAMODB_OPERATIONS:
                op = DYNAMODB_OPERATIONS[attr]
            elif attr in ("_call", "call") and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                if name in DYNAMODB_OPERATIONS:
                    op = DYNAMODB_OPERATIONS[name]
                elif name in camel:
                    op = name
            if op is not None:
                table: str | None = in_dict.get(id(node))
                for kw in node.keywords:
                    value = kw.value
                    if (
                        kw.arg == "TableName"
                        and isinstance(value, ast.Attribute)
                        and value.attr.startswith("table_")
                    ):
                        table = value.attr
                for setting in [table] if table else sorted(named) or [None]:
                    ops.setdefault(setting, set()).add(f"dynamodb:{op}")
            if attr == "get" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and first.value == "IndexName":
                    index = True
    return ops, index


def expand_locals(text: str, seen: frozenset[str] = frozenset()) -> str:
    """``text`` with the definitions of the locals it uses appended (recursively), except the
    MSK ARN locals, which name the resource kind themselves."""
    import json

    out = [text]
    defined = locals_of(TF)
    for name in re.findall(r"local\.([A-Za-z_]\w*)", text):
        if name in KNOWN_LOCALS or name in seen or name not in defined:
            continue
        out.append(expand_locals(json.dumps(defined[name]), seen | {name}))
    return "\n".join(out)


def targets(resource: str, variables: dict[str, Any]) -> set[str]:
    """A policy resource as the things it names: cluster, topic:<key>, group:<pattern>,
    table:<terraform table>, index:<terraform table>."""
    found: set[str] = set()
    text = expand_locals(resource)
    if re.search(r"local\.msk_cluster_arn(?!\w)", resource):
        found.add(CLUSTER)
    found |= {f"topic:{k}" for k in re.findall(r'local\.topic_arns\["(\w+)"\]', text)}
    if "values(local.topic_arns)" in text:
        found |= {f"topic:{k}" for k in variables["topics"]["default"]}
    m = re.search(r"local\.msk_group_arn_prefix\}/(.+)$", resource)
    if m:
        found.add("group:" + re.sub(r"\$\{var\.consumer_group\}", "{LVP_CONSUMER_GROUP}", m.group(1)))
    for table in re.findall(r"aws_dynamodb_table\.(\w+)\.arn", text):
        found.add(f"table:{table}")
        if "/index/*" in text:
            found.add(f"index:{table}")
    return found


def grants(root: dict[str, list[Any]], name: str, variables: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, target) pairs a policy document allows."""
    out: set[tuple[str, str]] = set()
    for actions, resources in policy_actions(root, name):
        for resource in resources:
            named = targets(resource, variables)
            assert named, f"{name}: cannot tell what {resource} is"
            out |= {(a, t) for a in actions for t in named}
    return out


def topic_key(service: str, env_name: str) -> str:
    value = locals_of(TF)["service_environment"][service][env_name]
    m = re.fullmatch(r"\$\{var\.topics\.(\w+)\}", value)
    assert m, f"{service}: {env_name} must come from var.topics, not {value}"
    return m.group(1)


def needed(service: str, variables: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, target) pairs a service needs: Kafka from KAFKA_NEEDS, DynamoDB from its code
    and the tables its task definition names."""
    kafka = KAFKA_NEEDS[service]
    need: set[tuple[str, str]] = {("kafka-cluster:Connect", CLUSTER)}
    if kafka["produce"]:
        need.add(("kafka-cluster:WriteDataIdempotently", CLUSTER))  # enable.idempotence (lvp.kafka)
    for env_name in kafka["produce"]:
        need |= {(a, f"topic:{topic_key(service, env_name)}") for a in PRODUCE}
    for env_name in kafka["consume"]:
        need |= {(a, f"topic:{topic_key(service, env_name)}") for a in CONSUME}
    for group in kafka["groups"]:
        need |= {(a, f"group:{group}") for a in GROUP}
    for env_name in kafka.get("create", ()):
        need |= {(a, f"topic:{topic_key(service, env_name)}") for a in CREATE}
        need.add(("kafka-cluster:DescribeCluster", CLUSTER))
    for env_name in kafka.get("alter_config", ()):
        need.add(("kafka-cluster:AlterTopicDynamicConfiguration", f"topic:{topic_key(service, env_name)}"))
    env = locals_of(TF)["service_environment"][service]
    by_setting = {
        f.name: re.findall(r"aws_dynamodb_table\.(\w+)\.", str(env.get(f.metadata["env"], "")))
        for f in SETTINGS
        if f.name.startswith("table_")
    }
    tables = {t for v in env.values() for t in re.findall(r"aws_dynamodb_table\.(\w+)\.", str(v))}
    calls, uses_index = dynamodb_calls(service)
    assert not calls or tables, f"{service} calls DynamoDB but its task definition names no table"
    for setting, actions in calls.items():
        on = tables if setting is None else set(by_setting.get(setting) or ())
        assert setting is None or on, f"{service} calls DynamoDB on {setting}, which its task does not set"
        for table in on:
            need |= {(a, f"table:{table}") for a in actions}
            if uses_index:
                need |= {(a, f"index:{table}") for a in actions}
    return need


def test_kafka_needs_match_the_code() -> None:
    """The declared Kafka table above against the code: topic settings the service reads, the
    clients it builds, the consumer group ids it forms."""
    for service, kafka in KAFKA_NEEDS.items():
        topic_envs = kafka["produce"] | kafka["consume"] | kafka.get("create", set())
        assert topic_envs <= set(SERVICE_ENV[service]), f"{service} does not read {topic_envs}"
        read_topics = {e for e in SERVICE_ENV[service] if e in TOPIC_NAME_ENVS}
        assert read_topics <= topic_envs, f"{service} reads topics {read_topics - topic_envs} not declared"
        source = "\n".join(p.read_text() for p in package_sources(service))
        if service in ("collector", "profiles", "viewer"):
            assert bool(kafka["produce"]) == ("Producer(" in source), f"{service}: producer"
            assert bool(kafka["consume"]) == ("Consumer(" in source), f"{service}: consumer"
    profiles = "\n".join(p.read_text() for p in package_sources("profiles"))
    suffixes = set(re.findall(r"consumer_group\}(-[\w-]+)\"", profiles))
    assert {f"{{LVP_CONSUMER_GROUP}}{s}" for s in suffixes} | {"{LVP_CONSUMER_GROUP}"} == KAFKA_NEEDS[
        "profiles"
    ]["groups"]
    viewer = "\n".join(p.read_text() for p in package_sources("viewer"))
    prefixes = set(re.findall(r'"group\.id":\s*f"([\w-]+)\{', viewer))
    assert {f"{p}*" for p in prefixes} == KAFKA_NEEDS["viewer"]["groups"]
    from lvp.kafka import topic_specs

    assert {t.topic for t in topic_specs(Settings.from_env({}))} == {
        Settings.from_env({}).topic_good,
        Settings.from_env({}).topic_bad,
        Settings.from_env({}).topic_changes,
    }


def test_dynamodb_calls_are_found() -> None:
    calls, index = dynamodb_calls("profiles")
    actions = set().union(*calls.values())
    assert {"dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"} <= actions
    assert index
    assert dynamodb_calls("collector") == ({}, False)
    viewer, _index = dynamodb_calls("viewer")
    assert viewer["table_viewer_state"] >= {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"}
    assert viewer["table_profiles"] == {"dynamodb:GetItem"}
    assert viewer["table_history"] == {"dynamodb:Query"}


@pytest.mark.parametrize("service", sorted(KAFKA_NEEDS))
def test_each_task_role_grants_exactly_what_its_service_needs(
    root: dict[str, list[Any]], variables: dict[str, Any], service: str
) -> None:
    granted = grants(root, service, variables)
    need = needed(service, variables)
    missing = need - granted
    assert not missing, f"{service} role lacks {sorted(missing)}"
    extra = granted - need
    assert not extra, f"{service} role grants more than its service uses: {sorted(extra)}"
    for action, target in granted:
        assert "*" not in action, f"{service}: wildcard action {action}"
        if "*" in target:  # only the viewer's random reader groups are a pattern
            assert (service, target) == ("viewer", "group:lvp-viewer-*"), f"{service}: wildcard {target}"


def test_every_table_is_granted_to_the_services_that_name_it(
    root: dict[str, list[Any]], variables: dict[str, Any]
) -> None:
    """Every table of lvp/tables.py (a Terraform table each, see above) is used by some service,
    and only the services whose task definition names it get rights on it."""
    terraform_tables = {
        k.split(".")[1] for k in typed(root["resource"]) if k.startswith("aws_dynamodb_table.")
    }
    assert len(terraform_tables) == len(table_definitions())
    env = locals_of(TF)["service_environment"]
    for table in terraform_tables:
        users = {s for s in KAFKA_NEEDS if f"aws_dynamodb_table.{table}." in str(env[s])}
        assert users, f"no service names table {table}"
        for service in KAFKA_NEEDS:
            on_table = {t for _a, t in grants(root, service, variables) if t.endswith(f":{table}")}
            assert bool(on_table) == (service in users), f"{service} / {table}"


# --- CORS, logs, retention in the task definitions ------------------------------------------------------
def test_collector_and_viewer_have_their_own_cors_origins(variables: dict[str, Any]) -> None:
    env = locals_of(TF)["service_environment"]
    local = locals_of(TF)
    assert env["collector"]["LVP_CORS_ORIGINS"] == "${var.collector_cors_origins}"
    # the viewer reads LVP_VIEWER_CORS_ORIGINS, its own list, never the collector's
    assert env["viewer"]["LVP_VIEWER_CORS_ORIGINS"] == "${local.viewer_cors_origins}"
    assert "LVP_CORS_ORIGINS" not in env["viewer"]
    assert "var.viewer_cors_origins" in local["viewer_cors_origins"]
    assert "collector" not in local["viewer_cors_origins"]
    assert "aws_lb.this" in local["viewer_origin"]  # default: the viewer's own origin only
    assert variables["viewer_cors_origins"]["default"] is None
    assert variables["collector_cors_origins"]["default"] == "*"
    assert "cors_origins" not in variables, "one variable for both services is what issue #12 removed"


def test_services_log_json_and_the_topics_job_knows_the_retention(variables: dict[str, Any]) -> None:
    env = locals_of(TF)["service_environment"]
    for service in SERVICE_ENV:
        assert env[service]["LVP_LOG_FORMAT"] == "json", service
    assert env["topics"]["LVP_RETENTION_DAYS"] == env["profiles"]["LVP_RETENTION_DAYS"]
    assert env["profiles"]["LVP_DYNAMODB_CLIENT"] == "${var.dynamodb_client}"
    assert variables["dynamodb_client"]["default"] == "http"


def test_request_logs_keep_no_raw_identifiers(root: dict[str, list[Any]], variables: dict[str, Any]) -> None:
    """GET /i carries the event (user ids, ...) in its query string: the WAF log redacts it (and
    the Authorization and Cookie headers); ALB access logs, which cannot redact, are off unless
    an operator names a bucket, and the variable says what they would keep."""
    logging = typed(root["resource"])["aws_wafv2_web_acl_logging_configuration.main"]
    redacted = [next(iter(r)) for r in logging["redacted_fields"]]
    assert "query_string" in redacted
    headers = {r["single_header"][0]["name"] for r in logging["redacted_fields"] if "single_header" in r}
    assert headers == {"authorization", "cookie"}
    assert variables["alb_access_logs_bucket"]["default"] is None
    assert "query string" in variables["alb_access_logs_bucket"]["description"]
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert "ALB access logs" in deploy and "query string" in deploy


# --- the deploy instructions -----------------------------------------------------------------------------
def terraform_commands(markdown: str) -> list[str]:
    """`terraform plan|apply` command lines of the ```sh blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if re.match(r"(terraform|tflocal) (plan|apply)\b", line):
                commands.append(line)
    return commands


def given_vars(command: str) -> dict[str, str]:
    import shlex

    words = shlex.split(command)
    out = {}
    for i, word in enumerate(words):
        if word == "-var":
            name, _, value = words[i + 1].partition("=")
            out[name] = value
        elif word.startswith("-var="):
            name, _, value = word[5:].partition("=")
            out[name] = value
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/deploy.md"])
def test_deploy_snippets_give_every_required_variable(doc: str, variables: dict[str, Any]) -> None:
    """Every -var a snippet passes exists, and a full plan/apply (not one with -target, nor the
    apply of a saved plan) gives every variable that has no default."""
    required = {name for name, body in variables.items() if "default" not in body}
    assert "image_tag" in required
    commands = terraform_commands((ROOT / doc).read_text())
    full = [c for c in commands if "-target" not in c and not re.search(r"apply \S+\.tfplan$", c)]
    assert full, f"{doc}: no terraform plan/apply snippet"
    for command in commands:
        given = given_vars(command)
        assert set(given) <= set(variables), (
            f"{doc}: unknown variables {set(given) - set(variables)} in {command}"
        )
    for command in full:
        missing = required - set(given_vars(command))
        assert not missing, f"{doc}: `{command}` lacks the required {sorted(missing)}"


def test_readme_deploys_the_whole_path() -> None:
    text = (ROOT / "README.md").read_text()
    deploy = text.split("## Run under LocalStack (Docker) and deploy to AWS", 1)[1].split("\n## ", 1)[0]
    order = ["terraform init", "-target=aws_ecr_repository.app", "docker build", "docker push",
             "terraform plan", "terraform apply plan.tfplan", "topics_run_task_command"]  # fmt: skip
    positions = [deploy.find(step) for step in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions), "build, push, apply, then create the topics"


def test_the_waf_blocks_login_bodies_larger_than_the_viewer_reads(root: dict[str, list[Any]]) -> None:
    """The managed body-size rule only counts (tracker POSTs are large); a rule of our own blocks
    login requests larger than the viewer's own cap."""
    from viewer.auth import LOGIN_MAX_BODY

    acl = typed(root["resource"])["aws_wafv2_web_acl.main"]
    rules = {r["name"]: r for r in acl["rule"]}
    login = rules["login-body-size"]
    assert "block" in login["action"][0]
    parts = login["statement"][0]["and_statement"][0]["statement"]
    path = parts[0]["byte_match_statement"][0]
    size = parts[1]["size_constraint_statement"][0]
    assert path["search_string"] == "/api/log" and path["positional_constraint"] == "STARTS_WITH"
    assert (size["comparison_operator"], size["size"]) == ("GT", LOGIN_MAX_BODY)
    assert size["field_to_match"][0]["body"][0]["oversize_handling"] == "MATCH"
    assert login["priority"] < min(r["priority"] for name, r in rules.items() if name != "login-body-size")

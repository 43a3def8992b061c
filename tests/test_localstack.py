"""localstack/: the LocalStack ready.d init script (generated from lvp/tables.py and run here
against DynamoDB Local through an `awslocal` wrapper), the docker compose file, Prometheus and
Grafana provisioning, and the Dockerfile the compose file builds. No Docker engine runs here, so
everything that can be checked without one is checked statically."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import yaml

from lvp.cli import build_parser
from lvp.config import SETTINGS, Settings
from lvp.service_env import LOCAL_ONLY_ENV, SERVICE_ENV, service_env
from lvp.tables import TTL_ATTRIBUTE, table_definitions

ROOT = Path(__file__).resolve().parent.parent
LOCALSTACK = ROOT / "localstack"
COMPOSE = LOCALSTACK / "docker-compose.yml"
SCRIPT = LOCALSTACK / "ready.d" / "01-tables.sh"
AWS_CLI = "/usr/bin/aws"

# compose service -> port setting its healthcheck and Prometheus target must use
METRICS_PORT = {
    "collector": "LVP_COLLECTOR_PORT",
    "profiles": "LVP_PROFILES_METRICS_PORT",
    "viewer": "LVP_VIEWER_PORT",
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lvp_generate_init", LOCALSTACK / "generate_init.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the ready.d init script ---------------------------------------------------------------------------
def test_committed_init_script_is_the_generated_one() -> None:
    generated = load_generator().render()
    assert SCRIPT.read_text() == generated, "run .venv/bin/python localstack/generate_init.py"
    assert SCRIPT.stat().st_mode & stat.S_IXUSR, "LocalStack only runs executable init scripts"
    assert generated.startswith("#!/bin/bash\n")
    check = subprocess.run([sys.executable, str(LOCALSTACK / "generate_init.py"), "--check"], timeout=60)
    assert check.returncode == 0


@pytest.fixture
def awslocal(tmp_path: Path) -> Path:
    """A directory with `awslocal`: Debian's AWS CLI with --endpoint-url from $ENDPOINT (inside
    LocalStack the real awslocal does the same against localhost:4566)."""
    if not os.access(AWS_CLI, os.X_OK):
        pytest.fail("the AWS CLI is missing: `make setup-system` installs Debian's awscli")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "awslocal"
    wrapper.write_text(f'#!/bin/sh\nexec {AWS_CLI} --endpoint-url "$ENDPOINT" "$@"\n')
    wrapper.chmod(0o755)
    return bindir


def run_init_script(
    bindir: Path, endpoint: str, profiles: str, history: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(bindir.parent),
        "ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LVP_TABLE_PROFILES": profiles,
        "LVP_TABLE_HISTORY": history,
        "LVP_TABLE_VIEWER_STATE": f"{profiles}-state",
    }
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def _key_schema(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in keys]


def test_init_script_creates_the_code_tables(awslocal: Path, dynamodb_local: str) -> None:
    profiles, history = f"profiles-{uuid.uuid4().hex[:8]}", f"history-{uuid.uuid4().hex[:8]}"
    first = run_init_script(awslocal, dynamodb_local, profiles, history)
    assert first.returncode == 0, first.stderr
    assert f"table {profiles}: created" in first.stdout and f"table {history}: created" in first.stdout
    again = run_init_script(awslocal, dynamodb_local, profiles, history)  # LocalStack restarts re-run it
    assert again.returncode == 0, again.stderr
    assert f"table {profiles}: exists" in again.stdout and "TTL" not in again.stdout

    client = boto3.client(
        "dynamodb", endpoint_url=dynamodb_local, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    for want in table_definitions(profiles, history, f"{profiles}-state"):
        got = client.describe_table(TableName=want["TableName"])["Table"]
        assert _key_schema(got["KeySchema"]) == _key_schema(want["KeySchema"])
        assert sorted(
            (a["AttributeName"], a["AttributeType"]) for a in got["AttributeDefinitions"]
        ) == sorted((a["AttributeName"], a["AttributeType"]) for a in want["AttributeDefinitions"])
        assert (
            got.get("BillingModeSummary", {}).get("BillingMode") == want["BillingMode"] == "PAY_PER_REQUEST"
        )
        got_gsis = {
            g["IndexName"]: (_key_schema(g["KeySchema"]), g["Projection"]["ProjectionType"])
            for g in got.get("GlobalSecondaryIndexes", [])
        }
        want_gsis = {
            g["IndexName"]: (_key_schema(g["KeySchema"]), g["Projection"]["ProjectionType"])
            for g in want.get("GlobalSecondaryIndexes", [])
        }
        assert got_gsis == want_gsis
        ttl = client.describe_time_to_live(TableName=want["TableName"])["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
        assert ttl["AttributeName"] == TTL_ATTRIBUTE


# --- the compose file ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def resolve(value: Any) -> str:
    """A compose value with its `${VAR:-default}` defaults applied (as with an empty shell)."""
    text = str(value)
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}", r"required-\1", text)  # ${VAR:?error}
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", text)
    return text.replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: resolve(v) for k, v in env.items()}


def lvp_command(service: dict[str, Any]) -> list[str] | None:
    """The `lvp` arguments of a service built from the project's image, else None."""
    if "build" not in service:
        return None
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def service_kind(command: list[str]) -> str:
    return command[0]


def test_every_service_has_an_image_and_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "localstack",
        "kafka",
        "topics",
        "collector",
        "profiles",
        "viewer",
        "tracker",
        "prometheus",
        "grafana",
    } <= set(services)
    waited_for_completion = {
        name
        for s in services.values()
        for name, cond in (s.get("depends_on") or {}).items()
        if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully"
    }
    for name, s in services.items():
        assert "image" in s or "build" in s, f"{name}: no image or build"
        hc = s.get("healthcheck")
        assert hc, f"{name}: no healthcheck"
        if hc.get("disable"):
            # only one-shot jobs that others wait for with service_completed_successfully
            assert s.get("restart") == "no" and name in waited_for_completion, f"{name}: healthcheck disabled"
        else:
            assert hc["test"] and hc["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: bad healthcheck"
    for name, s in services.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if isinstance(cond, dict) and cond.get("condition") == "service_healthy":
                assert not services[dep]["healthcheck"].get("disable"), f"{name} waits for {dep}'s health"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, s in compose["services"].items():
        image = s["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: pin {image}"
        if "build" not in s:
            assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: use an exact version tag, not {tag}"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_lvp_services_run_real_commands_with_every_setting(compose: dict[str, Any]) -> None:
    parser = build_parser()
    seen = set()
    for name, s in compose["services"].items():
        command = lvp_command(s)
        if command is None:
            continue
        args = parser.parse_args(command)  # exits (fails the test) on an unknown subcommand/flag
        assert callable(args.func)
        kind = service_kind(command)
        if kind not in SERVICE_ENV:
            continue
        seen.add(kind)
        env = environment(s)
        missing = sorted(set(service_env(kind, local=True)) - set(env))
        assert not missing, f"{name} does not set {missing} (lvp/service_env.py)"
        settings = Settings.from_env(env)  # every value has the right type
        if kind in ("collector", "viewer"):
            host = settings.collector_host if kind == "collector" else settings.viewer_host
            assert host == "0.0.0.0", f"{name} must listen on all interfaces in its container"
        assert not set(env) & (
            set(LOCAL_ONLY_ENV) - set(service_env(kind, local=True)) - {"AWS_ENDPOINT_URL"}
        ), name
    assert seen == set(SERVICE_ENV), f"compose runs {seen}, lvp/service_env.py knows {set(SERVICE_ENV)}"


def test_endpoints_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = environment(services["kafka"])
    advertised = dict(item.split("://", 1) for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    table_names = environment(services["localstack"])
    assert "dynamodb" in table_names["SERVICES"].split(",")
    for name, s in services.items():
        env = environment(s)
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] in advertised.values(), name
            assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
        if "AWS_ENDPOINT_URL" in env:
            url = urlparse(env["AWS_ENDPOINT_URL"])
            assert url.hostname == "localstack" and url.port == 4566, name
            assert env["LVP_TABLE_PROFILES"] == table_names["LVP_TABLE_PROFILES"], name
            assert env["LVP_TABLE_HISTORY"] == table_names["LVP_TABLE_HISTORY"], name
    mounts = [v.split(":") for v in services["localstack"]["volumes"]]
    ready = [(src, dst) for src, dst, *_ in mounts if dst == "/etc/localstack/init/ready.d"]
    assert ready and (LOCALSTACK / ready[0][0]).resolve() == SCRIPT.parent


def test_healthchecks_and_ports_match_the_settings(compose: dict[str, Any]) -> None:
    for name, setting in METRICS_PORT.items():
        s = compose["services"][name]
        port = environment(s)[setting]
        test = " ".join(s["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in test, f"{name}: healthcheck does not probe port {port}"
        assert any(str(p).endswith(f":{port}") for p in s["ports"]), f"{name}: port {port} not published"


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_mount = next(
        v for v in prometheus["volumes"] if v.split(":")[1] == "/etc/prometheus/prometheus.yml"
    )
    config = yaml.safe_load((LOCALSTACK / config_mount.split(":")[0]).read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for target in sc["targets"]
    }
    for name, setting in METRICS_PORT.items():
        port = environment(compose["services"][name])[setting]
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"


def test_grafana_is_provisioned(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {dst: LOCALSTACK / src for src, dst, *_ in (v.split(":") for v in grafana["volumes"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    url = urlparse(datasources[0]["url"])
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    providers = yaml.safe_load((provisioning / "dashboards" / "lvp.yml").read_text())["providers"]
    dashboards_dir = providers[0]["options"]["path"]
    assert dashboards_dir in mounts, "the dashboards folder is not mounted where the provider reads"
    assert list(mounts[dashboards_dir].glob("*.json")), "no dashboard JSON"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (mounts[dashboards_dir] / Path(home).name).exists()


def test_no_public_default_secrets_and_only_loopback_ports(compose: dict[str, Any]) -> None:
    """Secrets have no default in the file (compose refuses to start without them; `make
    compose-env` generates them), and every published port is bound to 127.0.0.1."""
    text = COMPOSE.read_text()
    secret_envs = {f.metadata["env"] for f in SETTINGS if f.metadata["secret"]}
    secret_envs.add("GF_SECURITY_ADMIN_PASSWORD")
    for name, s in compose["services"].items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
        raw_env = s.get("environment", {})
        for key in secret_envs & set(raw_env):
            value = str(raw_env[key])
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (
                f"{name}: {key} must be required, not {value!r}"
            )
    for default in ("local-dev-token", "change-me", "PASSWORD:-admin"):
        assert default not in text, f"a well-known default secret is still in the compose file: {default}"
    makefile = (ROOT / "Makefile").read_text()
    generated = re.search(r"localstack/\.env:\n\t(.+)\n", makefile)
    assert generated, "make compose-env must write localstack/.env"
    for key in ("LVP_PSEUDONYM_KEY", "LVP_API_TOKENS", "LVP_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"):
        assert key in generated.group(1) and f"${{{key}:?" in text, key
    assert "localstack/.env" in (ROOT / ".gitignore").read_text()


def test_compose_env_target_writes_fresh_private_secrets(tmp_path: Path) -> None:
    (tmp_path / "localstack").mkdir()
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    subprocess.run(["make", "-s", "compose-env"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    env_file = tmp_path / "localstack" / ".env"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert set(values) == {"LVP_PSEUDONYM_KEY", "LVP_API_TOKENS", "LVP_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in values.values()) and len(set(values.values())) == 4
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    subprocess.run(["make", "-s", "compose-env"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert dict(line.split("=", 1) for line in env_file.read_text().splitlines()) == values  # kept


def test_kafka_ui_browses_the_compose_broker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ui = services["kafka-ui"]
    env = environment(ui)
    kafka_env = environment(services["kafka"])
    assert f"INTERNAL://{env['KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert ui["ports"] == ["127.0.0.1:8081:8080"]
    assert ui["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_topics_job_gives_the_changes_topic_the_profiles_retention(compose: dict[str, Any]) -> None:
    services = compose["services"]
    topics, profiles = environment(services["topics"]), environment(services["profiles"])
    assert topics["LVP_RETENTION_DAYS"] == profiles["LVP_RETENTION_DAYS"]
    viewer, collector = environment(services["viewer"]), environment(services["collector"])
    assert "LVP_CORS_ORIGINS" not in viewer  # the viewer's own list, never the collector's
    assert viewer["LVP_VIEWER_CORS_ORIGINS"] != collector["LVP_CORS_ORIGINS"]


# --- the Dockerfile ------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_builds_the_dockerfile(compose: dict[str, Any]) -> None:
    for s in compose["services"].values():
        if "build" in s:
            context = (LOCALSTACK / s["build"]["context"]).resolve()
            assert context == ROOT and (context / s["build"]["dockerfile"]).is_file()


def test_dockerfile_is_pinned_slim_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions()
    froms = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for image in froms:
        assert re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+\.\d+[-a-z0-9.]*(@sha256:[0-9a-f]{64})?", image), image
    runtime = froms[-1]
    assert runtime.startswith("python:3.11.") and "slim" in runtime
    requires = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and runtime.startswith(f"python:{requires.group(1)}.")
    assert any(image.startswith("node:") for image in froms), "the tracker frontend is built in a node stage"
    last_stage = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [rest for word, rest in last_stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime must not run as root"
    assert any(word == "HEALTHCHECK" and "lvp.healthcheck" in rest for word, rest in last_stage)
    assert ("ENTRYPOINT", '["lvp"]') in last_stage
    # pages the services serve from paths relative to the source tree (/app)
    copied = [rest.split()[-1].rstrip("/") for word, rest in last_stage if word == "COPY"]
    for served in ("tracker-frontend/dist", "viewer-frontend", "lvp", "collector", "profiles", "viewer"):
        assert served in copied, f"the runtime image lacks {served}/"


def test_dockerfile_copies_only_what_the_context_has() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def excluded(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
            for p in prefixes
            for pat in ignored
        )

    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [a for a in rest.split() if not a.startswith("--")][:-1]
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert not excluded(src), f"COPY {src}: excluded by .dockerignore"
    for heavy in (".venv", ".tools-venv", "node_modules", ".git", "tests", "test-output"):
        assert excluded(heavy), f"{heavy} should not be sent to the Docker build"

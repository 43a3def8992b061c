"""lvp.service_env: the per-service settings contract the deployments are checked against must
itself match the code: every setting is classified, and every setting a service package reads
is declared for that service."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from lvp.config import Settings
from lvp.service_env import (
    LOCAL_EXTRA,
    LOCAL_ONLY,
    LOCAL_ONLY_ENV,
    NOT_DEPLOYED,
    SERVICE_ENV,
    SERVICE_SETTINGS,
    secret_env,
    service_env,
    unclassified_settings,
)

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

# Settings methods/properties and the settings they read.
DERIVED: dict[str, tuple[str, ...]] = {
    "cors_origin_list": ("cors_origins",),
    "viewer_cors_origin_list": ("viewer_cors_origins",),
    "schema_dir_list": ("schema_dirs",),
    "api_token_list": ("api_tokens",),
    "url_keep_param_list": ("url_keep_params",),
    "url_pseudonymize_param_list": ("url_pseudonymize_params",),
    "kafka_config": ("kafka_bootstrap_servers",),
    "require_pseudonym_key": ("pseudonym_key", "dev", "state_dir"),
    "dp_epsilon_value": ("dp_epsilon",),
}
NOT_READING = {"from_env", "with_"}


def test_every_setting_is_read_by_a_service_or_local_only() -> None:
    assert unclassified_settings() == [], (
        "new settings must be assigned to the services that read them in lvp/service_env.py "
        "(and then set in localstack/docker-compose.yml and terraform/ecs.tf)"
    )
    declared = {n for names in SERVICE_SETTINGS.values() for n in names} | set(LOCAL_ONLY)
    assert declared <= set(FIELDS), f"unknown settings: {declared - set(FIELDS)}"
    assert not set(LOCAL_ONLY) & {n for names in SERVICE_SETTINGS.values() for n in names}


def test_env_names_and_secrets_come_from_settings_metadata() -> None:
    for service, names in SERVICE_SETTINGS.items():
        assert SERVICE_ENV[service] == [FIELDS[n].metadata["env"] for n in names]
        assert len(set(SERVICE_ENV[service])) == len(SERVICE_ENV[service]), f"{service}: duplicates"
        assert set(secret_env(service)) == {
            FIELDS[n].metadata["env"] for n in names if FIELDS[n].metadata["secret"]
        }
    assert secret_env("collector") == ["LVP_PSEUDONYM_KEY"]
    assert set(secret_env("viewer")) == {"LVP_API_TOKENS", "LVP_JWT_SECRET"}
    assert secret_env("profiles") == []
    assert "AWS_ENDPOINT_URL" in LOCAL_ONLY_ENV and "AWS_ENDPOINT_URL" not in SERVICE_ENV["profiles"]
    assert "AWS_ENDPOINT_URL" in service_env("profiles", local=True)
    assert set(LOCAL_EXTRA) <= set(SERVICE_SETTINGS)


def test_derived_settings_members_are_known() -> None:
    members = {
        name
        for name, value in vars(Settings).items()
        if not name.startswith("_")
        and name not in FIELDS
        and (callable(value) or isinstance(value, property))
    }
    members |= {n for n, v in vars(Settings).items() if isinstance(v, classmethod) and not n.startswith("_")}
    unknown = members - set(DERIVED) - NOT_READING
    assert not unknown, f"tell tests/test_service_env.py which settings {sorted(unknown)} read"


def settings_read_by(package: Path) -> set[str]:
    """Settings fields a package reads: attribute accesses named after a field or a derived member."""
    read: set[str] = set()
    for path in package.rglob("*.py"):
        if path.name.startswith("test_"):
            continue  # tests run in tests, not in the service
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute):
                if node.attr in FIELDS:
                    read.add(node.attr)
                read.update(DERIVED.get(node.attr, ()))
    return read


@pytest.mark.parametrize("service", ["collector", "profiles", "viewer"])
def test_declared_settings_cover_what_the_package_reads(service: str) -> None:
    package = ROOT / service
    if not any(package.rglob("*.py")):
        pytest.skip(f"{service}/ has no code yet")
    read = settings_read_by(package)
    undeclared = read - set(SERVICE_SETTINGS[service]) - set(LOCAL_ONLY) - set(NOT_DEPLOYED.get(service, ()))
    assert not undeclared, (
        f"{service} reads {sorted(undeclared)} but lvp/service_env.py does not list them for it, so the "
        "deployments may not set them"
    )

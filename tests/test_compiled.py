"""lvp.compiled: the modules setup.py compiles with mypyc are compiled in this install, give the
same messages as their Python source, and a stale build is noticed."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lvp import compiled

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "collector", "lvp", "profiles", "viewer")
PLAIN_INSTALL = pytest.mark.skipif(
    os.environ.get("LVP_COMPILE") == "0", reason="LVP_COMPILE=0: a plain Python install"
)

#: Runs the collector's pipeline over prepared requests and prints every message, in order.
RUN_PIPELINE = r"""
import json, sys
from lvp import compiled
from collector.identity import Identities
from collector.pipeline import Pipeline, RequestInfo
from lvp.config import Settings
from lvp.iglu import Registry

requests = json.load(open(sys.argv[1]))
settings = Settings.from_env({}, pseudonym_key="compiled-test-key-0123456789abcdef")
registry = Registry.from_settings(settings)
identities = Identities.from_settings(settings.require_pseudonym_key(), settings)
pipeline = Pipeline(registry, identities, "good", "bad")
out = {"compiled": compiled.report(), "messages": []}
for route, headers, cookies, items, schema, query in requests:
    ident = identities.for_request(headers, cookies, "203.0.113.9", None)
    info = RequestInfo(ident, 1_765_000_000_123, headers, route, query)
    result = pipeline.process(items, info, registry.validator(schema) if schema else None)
    for topic, key, value in result.messages:
        out["messages"].append([topic, key and key.decode(), value.decode()])
print(json.dumps(out))
"""


def _requests() -> list[list[Any]]:
    """The collector bench's traffic (media batches, pixels, raw ids in page URLs) and events
    that must become bad rows, as the routes hand them to the pipeline."""
    from bench.pipeline_bench import prepare

    prepared, _ = prepare(300, 150)
    out: list[list[Any]] = [[r, h, c, items, s, q] for r, h, c, items, s, q, _body in prepared]
    headers = {"user-agent": "test", "host": "collector"}
    broken = [
        {"e": "pv", "tv": "js-4", "p": "web", "dtm": "12x"},  # not milliseconds
        {"e": "zz", "tv": "js-4", "p": "web"},  # no such event type
        {"e": "ue", "tv": "js-4", "p": "web", "ue_pr": "{not json", "uid": "carol@example.com"},
        {"e": "ue", "tv": "js-4", "p": "web", "ue_pr": json.dumps({"schema": "iglu:x/y/jsonschema/1-0-0"})},
        {"e": "pv", "tv": "js-4", "p": "web", "co": '{"schema":"iglu:nope","data":[]}', "res": "9x9"},
        "not an object",
    ]
    out.append(["i", headers, {}, broken, None, "e=pv"])
    return out


def _run(pythonpath: Path, requests: Path) -> dict[str, Any]:
    """The pipeline in a new interpreter that imports the project from ``pythonpath`` (its
    working directory too, which comes first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_PIPELINE, str(requests)],
        cwd=pythonpath, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _masked(messages: list[list[str]]) -> list[tuple[str, str, Any]]:
    """Bad rows carry the time they were written, and the broken events' request has no cookie,
    so the collector gives it a new random network id: both masked."""
    out: list[tuple[str, str, Any]] = []
    for topic, key, value in messages:
        if topic == "bad":
            doc = json.loads(value)
            doc["data"]["failure"]["timestamp"] = "-"
            doc["data"]["payload"]["raw"]["userId"] = "-"
            out.append((topic, key, doc))
        else:
            out.append((topic, key, value))
    return out


@PLAIN_INSTALL
def test_every_listed_module_is_compiled_in_this_install() -> None:
    # setup.py builds them whenever a C compiler is here (CI has one); a missing build is a slower
    # collector, not an error, so this test is what notices it
    assert compiled.report() == {module: True for module in compiled.MODULES}
    assert compiled.stale() == []


@PLAIN_INSTALL
def test_compiled_modules_write_what_their_python_source_writes(tmp_path: Path) -> None:
    source = tmp_path / "source"  # the packages' Python files only: no extension to load
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("*.so", "__pycache__")
        )
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(_requests()))

    built = _run(ROOT, requests)
    plain = _run(source, requests)

    assert built["compiled"] == {module: True for module in compiled.MODULES}
    assert plain["compiled"] == {module: False for module in compiled.MODULES}
    good = [m for m in built["messages"] if m[0] == "good"]
    bad = [m for m in built["messages"] if m[0] == "bad"]
    assert len(good) > 1000 and len(bad) == 6
    assert _masked(built["messages"]) == _masked(plain["messages"])


def test_the_sources_are_the_modules_files() -> None:
    assert len(compiled.sources()) == len(compiled.MODULES)
    for module, path in zip(compiled.MODULES, compiled.sources(), strict=True):
        assert (ROOT / path).is_file() and (ROOT / path) == compiled.source_of(module)
    printed = subprocess.run(
        [sys.executable, str(ROOT / "lvp" / "compiled.py")], capture_output=True, text=True, check=True
    )
    assert printed.stdout.split() == compiled.sources()  # what the Makefile reads


def test_stale_extension_is_reported(tmp_path: Path) -> None:
    module = compiled.MODULES[0]
    source = compiled.source_of(module, tmp_path)
    source.parent.mkdir(parents=True)
    source.write_text("x = 1\n")
    assert compiled.extension_of(module, tmp_path) is None and compiled.stale(tmp_path) == []
    ext = source.with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0])
    ext.write_bytes(b"")
    now = time.time()
    os.utime(source, (now, now))
    os.utime(ext, (now - 60, now - 60))  # built before the last edit
    assert compiled.extension_of(module, tmp_path) == ext
    assert compiled.stale(tmp_path) == [module]
    os.utime(ext, (now + 1, now + 1))  # built again
    assert compiled.stale(tmp_path) == []

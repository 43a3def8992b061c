"""Test support: the collector app served by uvicorn in a thread on a free port, and a reader of
the topics it writes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from confluent_kafka import Consumer, KafkaError, TopicPartition
from starlette.applications import Starlette

from collector.app import create_app
from collector.routes import Collector
from collector.server import uvicorn_options
from lvp.config import Settings
from lvp.local.broker import free_port

TEST_KEY = "collector-tests-pseudonym-key-0123"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class RunningCollector:
    url: str
    settings: Settings
    server: uvicorn.Server
    app: Starlette

    @property
    def collector(self) -> Collector:
        return self.app.state.collector  # type: ignore[no-any-return]


@contextmanager
def serve_collector(settings: Settings, **app_kwargs: object) -> Iterator[RunningCollector]:
    port = free_port()
    app = create_app(settings, **app_kwargs)  # type: ignore[arg-type]
    # what `lvp collector` runs (no proxy headers: the collector reads X-Forwarded-For itself)
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": port, "log_level": "warning"}
    config = uvicorn.Config(app, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="collector-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the collector did not start")
        time.sleep(0.02)
    try:
        yield RunningCollector(f"http://127.0.0.1:{port}", settings, server, app)
    finally:
        server.should_exit = True
        thread.join(15)


def read_topic(
    bootstrap: str,
    topic: str,
    expected: int,
    match: Callable[[bytes], bool] | None = None,
    timeout: float = 20.0,
) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) in ``topic`` from the beginning whose value ``match``es, waiting until
    at least ``expected`` of them arrived (or the deadline passed) and every partition is read at
    least past the offsets ListOffsets gave when the call began (Tansu's: the first offset of the
    last record batch + 1, enough to know that batch is read): an end of partition reported
    short of that (a fetch answered from an older view of the log) does not end the read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]  # OFFSET 0
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        consumer.assign(parts)
        out: list[tuple[bytes | None, bytes]] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    p = msg.partition() or 0
                    if (msg.offset() or 0) >= ends.get(p, 0):
                        eof.add(p)
                    if len(out) >= expected and len(eof) == len(parts):
                        break
                continue
            eof.discard(msg.partition())
            value = msg.value() or b""
            if match is None or match(value):
                out.append((msg.key(), value))
        return out
    finally:
        consumer.close()

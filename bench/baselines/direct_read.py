"""The direct read path for R1 and R2: the same doors, reading the database in-process without the Celery hop.

- REST: `gunicorn -c gunicorn.conf.py 'bench.baselines.direct_read:create_app()'` — the service's own app
  (api.create_app: auth, trace ids, errors), with each read route's view swapped for one that calls the domain
  function in the request instead of dispatching to a task.
- Kafka: `python -m bench.baselines.direct_read` — the service's relay (kafka_relay.relay.Relay), whose reads are
  answered from the consumer loop with the same reply records instead of being handed to Celery.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message
from flask import Flask, Response, g

from api.routes import read_input, respond
from domain.context import OperationContext
from domain.schemas import parse_input
from errors import OperationError
from kafka_relay.relay import PartitionProgress, Relay
from messaging import wire
from messaging.producer import Delivery
from models import bind_database, unit_of_work
from registry import OPERATIONS, Operation

READS = [op for op in OPERATIONS.values() if op.queue == "reads"]


def run_in_process(operation: Operation, payload: dict[str, Any], trace_id: str) -> dict[str, Any]:
    """What the task would answer, computed here: the envelope of the domain function."""
    ctx = OperationContext(trace_id=trace_id, scoped_key=f"direct:{uuid.uuid4()}", owner="direct")
    try:
        inp = parse_input(operation.schema, payload)
        with unit_of_work():
            return {"response": operation.resolve_handler()(ctx, inp)}
    except OperationError as exc:
        return {"error": exc.to_error()}


def _direct_view(operation: Operation) -> Callable[..., Response]:
    def view(**path_params: str) -> Response:
        payload = read_input(operation, path_params)
        parse_input(operation.schema, payload)
        return respond(operation, run_in_process(operation, payload, g.trace_id), None)

    return view


def create_app() -> Flask:
    """The service's REST app with its read routes answered in-process."""
    from api import create_app as service_app

    app = service_app()
    for operation in READS:
        resource = operation.path.strip("/").split("/")[0].replace("-", "_")
        app.view_functions[f"{resource}.{operation.name}"] = _direct_view(operation)
    return app


class DirectRelay(Relay):
    """The relay, answering reads itself from the consumer loop (writes still go to their tasks)."""

    def handle(self, message: Message, state: PartitionProgress, offset: int) -> list[Delivery]:
        if message.topic() not in {op.name for op in READS}:
            return super().handle(message, state, offset)
        try:
            request = wire.decode_request(message)
        except wire.PoisonMessage:
            return super().handle(message, state, offset)
        envelope = run_in_process(OPERATIONS[request.operation], request.payload, request.trace_id)
        record = wire.reply_record(envelope, request.meta["reply"], request.trace_id)
        return [self.producer.produce(record, time.monotonic() + self.settings.kafka_delivery_timeout_s)]


def main() -> None:
    from observability.logs import configure_logging
    from settings import get_settings

    settings = get_settings()
    configure_logging(settings, "relay")
    bind_database(settings)
    relay = DirectRelay(settings)
    signal.signal(signal.SIGTERM, relay.request_stop)
    signal.signal(signal.SIGINT, relay.request_stop)
    relay.run()


if __name__ == "__main__":
    main()

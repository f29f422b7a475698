"""The load generator, a process of its own: open-loop arrivals at fixed rates, raised step by step.

`python -m bench.load < spec.json > result.json`

Requests start on schedule whatever the replies (open loop), and each latency is measured from the request's
scheduled start, so a stalled server is charged for the queue it causes (no coordinated omission). Every step is
bounded in count and time; the ramp stops at the first step that breaks its p99 or error budget.
Only 127.0.0.1 is ever a target.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.support.webhooks import sign

LOOPBACK = {"127.0.0.1", "localhost"}
MAX_REQUESTS_PER_STEP = 20_000  # bounds a step whatever rate x duration asks for
ERROR_BUDGET = 0.01  # a step with more failures than this has broken
THROUGHPUT_FLOOR = 0.9  # …and so has one that completes less than this share of what it offered


@dataclass
class Outcome:
    scheduled: float
    done: float | None = None
    ok: bool = False
    error: str | None = None
    partition: int | None = None  # Kafka: where the request was written (from its delivery report)
    replies: int = 0  # Kafka: answers received under its key (more than one is a duplicate)


@dataclass
class Step:
    rate: float
    duration_s: float
    wall_start: float = 0.0
    wall_end: float = 0.0
    monotonic_start: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def trace(self) -> list[list[float | int | None]]:
        """Every request as [sent, partition, first answer, answers]: wall-clock seconds, so that the orchestrator
        can set them against the moment it signalled a relay."""
        to_wall = self.wall_start - self.monotonic_start
        return [
            [
                round(o.scheduled + to_wall, 4),
                o.partition,
                None if o.done is None else round(o.done + to_wall, 4),
                o.replies,
            ]
            for o in self.outcomes
        ]

    def summary(self, slo_p99_ms: float) -> dict[str, Any]:
        latencies = sorted((o.done - o.scheduled) * 1000 for o in self.outcomes if o.ok and o.done is not None)
        sent = len(self.outcomes)
        ok = len(latencies)
        errors = sent - ok
        kinds: dict[str, int] = {}
        for o in self.outcomes:
            if not o.ok:
                kinds[o.error or "no reply"] = kinds.get(o.error or "no reply", 0) + 1
        throughput = ok / self.duration_s if self.duration_s else 0.0
        p99 = percentile(latencies, 99)
        broken = (
            sent == 0
            or errors > ERROR_BUDGET * sent
            or throughput < THROUGHPUT_FLOOR * self.rate
            or p99 is None
            or p99 > slo_p99_ms
        )
        return {
            "rate": self.rate,
            "duration_s": self.duration_s,
            "wall_start": self.wall_start,
            "wall_end": self.wall_end,
            "sent": sent,
            "ok": ok,
            "errors": errors,
            "error_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5]),
            "throughput_per_s": round(throughput, 1),
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "p99_ms": p99,
            "max_ms": round(latencies[-1], 1) if latencies else None,
            "slo_met": not broken,
        }


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return round(sorted_values[rank], 1)


def check_loopback(url_or_address: str) -> None:
    host = urlsplit(url_or_address).hostname if "//" in url_or_address else url_or_address.rsplit(":", 1)[0]
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to send load to {host!r}: only 127.0.0.1 is a target")


class Requests:
    """What each workload sends: the i-th request of a run, made from the seeded ids."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.kind = spec["request"]
        self.data = spec.get("data", {})
        self.sent_events: list[tuple[str, str]] = []
        self.run = uuid.uuid4().hex[:8]

    def rest(self, i: int) -> tuple[str, str, dict[str, str], bytes | None, int]:
        """(method, path, headers, body, expected status)."""
        headers = {"Authorization": f"Bearer {self.spec['api_key']}"}
        if self.kind == "create-payment-intent":
            customers = self.data["customers"]
            body = {"customerId": customers[i % len(customers)], "amount": 1000 + i % 500, "currency": "usd"}
            body["confirm"] = True
            headers.update({"Content-Type": "application/json", "Idempotency-Key": f"bench-{self.run}-{i}"})
            return "POST", "/payment-intents", headers, json.dumps(body).encode(), 201
        if self.kind == "get-payment-intent":
            ids = self.data["intents"]
            return "GET", f"/payment-intents/{ids[i % len(ids)]}", headers, None, 200
        if self.kind == "get-ztracking-payment-intent":
            ids = self.data["intents"]
            return "GET", f"/payment-intents/{ids[i % len(ids)]}/history", headers, None, 200
        if self.kind == "process-stripe-webhook":
            payload, signature = self.webhook(i)
            return (
                "POST",
                "/webhooks/stripe",
                {"Content-Type": "application/json", "Stripe-Signature": signature},
                payload.encode(),
                200,
            )
        raise ValueError(self.kind)

    def webhook(self, i: int) -> tuple[str, str]:
        """A signed event; one in ten repeats an event sent before (Stripe redelivers)."""
        if i % 10 == 9 and self.sent_events:
            payload = self.sent_events[(i * 7) % len(self.sent_events)][0]
        else:
            stripe_ids = self.data["stripe_intents"]
            event = {
                "id": f"evt_bench_{self.run}_{i}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(time.time()),
                "data": {
                    "object": {
                        "id": stripe_ids[i % len(stripe_ids)],
                        "object": "payment_intent",
                        "status": "succeeded",
                        "amount": 2000,
                        "amount_received": 2000,
                        "amount_capturable": 0,
                    }
                },
            }
            payload = json.dumps(event, separators=(",", ":"))
            if len(self.sent_events) < 5000:
                self.sent_events.append((payload, ""))
        return payload, sign(payload, self.spec["webhook_secret"])

    def kafka(self, i: int) -> dict[str, Any]:
        if self.spec.get("dialect") == "cart":
            return cart_create(self.run, i)
        if self.kind == "create-payment-intent":
            customers = self.data["customers"]
            return {
                "customerId": customers[i % len(customers)],
                "amount": 1000 + i % 500,
                "currency": "usd",
                "confirm": True,
            }
        ids = self.data["intents"]
        return {"paymentIntentId": ids[i % len(ids)]}


def cart_create(run: str, i: int) -> dict[str, Any]:
    """Issue 27: the web app's create (its cart and who pays), a person never seen before each time: a new Stripe
    Customer per request, on our side and the original's."""
    from stand_ins.demo import checkout_body

    return checkout_body(f"bench.{run}.{i}@example.com")


# What a caller of the cart create reads (the web app: the client secret for Stripe.js, the id for its room). The
# original answers `success` even when its Stripe call failed, with no client secret: that is no success here.
CART_READS = ("clientSecret", "paymentIntentId")


def kafka_reply(body: dict[str, Any], reads: tuple[str, ...] = ()) -> tuple[bool, str | None]:
    """(answered as the caller needs, error) of a reply on a `-response` topic: ours (`error.code`) or the
    original's (`error` a message)."""
    response = body.get("response")
    if response and all(isinstance(response, dict) and response.get(k) for k in reads):
        return True, None
    error = body.get("error")
    if isinstance(error, dict):
        return False, str(error.get("code"))
    if error:
        return False, str(error)[:80]
    return False, "missing " + "/".join(reads) if response else "no response"


def good_reply(kind: str, status: int, body: bytes) -> tuple[bool, str | None]:
    if kind == "process-stripe-webhook" and status == 200:
        return True, None
    if status >= 400:
        try:
            return False, f"{status} {json.loads(body)['error']['code']}"
        except (ValueError, KeyError, TypeError):
            return False, f"{status}"
    return True, None


async def arrivals(step: Step) -> AsyncIterator[Outcome]:
    """Open-loop arrivals at the step's fixed rate: each request is due at its scheduled time, whether or not the
    earlier ones were answered (latency counts from then), and is recorded in the step."""
    start = time.monotonic()
    step.wall_start, step.monotonic_start = time.time(), start
    for k in range(min(MAX_REQUESTS_PER_STEP, int(step.rate * step.duration_s))):
        scheduled = start + k / step.rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = Outcome(scheduled)
        step.outcomes.append(outcome)
        yield outcome


async def run_rest(spec: dict[str, Any], requests: Requests) -> list[Step]:
    import aiohttp

    base = spec["base_url"]
    check_loopback(base)
    timeout = aiohttp.ClientTimeout(total=spec["timeout_s"])
    connector = aiohttp.TCPConnector(limit=spec.get("max_connections", 2000), force_close=False, ttl_dns_cache=None)
    steps: list[Step] = []
    counter = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, outcome: Outcome) -> None:
            method, path, headers, body, expected = requests.rest(i)
            try:
                async with session.request(method, base + path, headers=headers, data=body) as response:
                    payload = await response.read()
                    outcome.done = time.monotonic()
                    ok, error = good_reply(requests.kind, response.status, payload)
                    if ok and response.status != expected:
                        ok, error = False, f"{response.status}"
                    outcome.ok, outcome.error = ok, error
            except TimeoutError:
                outcome.error = "timeout"
            except aiohttp.ClientError as exc:
                outcome.error = type(exc).__name__

        async def run_step(rate: float, duration: float) -> Step:
            nonlocal counter
            step = Step(rate, duration)
            tasks: list[asyncio.Task[None]] = []
            async for outcome in arrivals(step):
                tasks.append(asyncio.create_task(one(counter, outcome)))
                counter += 1
            if tasks:
                await asyncio.wait(tasks, timeout=spec["timeout_s"] + 1)
            step.wall_end = time.time()
            return step

        steps = await ramp_steps(spec, run_step)
    return steps


class KafkaGateway:
    """A gateway-like client: requests under uuid keys, replies matched by key on the response topic."""

    def __init__(self, bootstrap: str, topic: str, trace: bool = False, reads: tuple[str, ...] = ()) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        check_loopback(bootstrap)
        self.topic = topic
        self.reads = reads
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all"})
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-gateway-{uuid.uuid4()}",  # never joined: partitions are assigned by hand
                "enable.auto.commit": False,
                # Tansu holds a fetch for about half of this: the gateway's own tuning, as the tests use.
                "fetch.wait.max.ms": 10,
            }
        )
        response_topic = f"{topic}-response"
        metadata = self.consumer.list_topics(response_topic, timeout=10)
        partitions = []
        for p in metadata.topics[response_topic].partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(response_topic, p), timeout=10)
            partitions.append(TopicPartition(response_topic, p, high))
        self.consumer.assign(partitions)
        self.pending: dict[bytes, Outcome] = {}
        # Tracing keeps every answered request, so that a second answer to it is counted (a relay's crash may
        # hand a request over twice: at-least-once), not dropped as unknown.
        self.answered: dict[bytes, Outcome] | None = {} if trace else None
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping:
            # consume() waits out its whole timeout unless the batch fills: short, so replies are seen at once.
            for message in self.consumer.consume(1000, 0.005):
                if message.error():
                    continue
                now = time.monotonic()
                with self.lock:
                    outcome = self.pending.pop(message.key(), None)
                    if outcome is None and self.answered is not None:
                        seen = self.answered.get(message.key())
                        if seen is not None:
                            seen.replies += 1
                        continue
                    if outcome is not None and self.answered is not None:
                        self.answered[message.key()] = outcome
                if outcome is None:
                    continue
                outcome.replies += 1
                try:
                    outcome.ok, outcome.error = kafka_reply(json.loads(message.value()), self.reads)
                except (ValueError, TypeError, AttributeError):
                    outcome.error = "bad reply"
                outcome.done = now

    def send(self, payload: dict[str, Any], outcome: Outcome) -> None:
        key = str(uuid.uuid4()).encode()
        with self.lock:
            self.pending[key] = outcome
        body = {**payload, "traceId": f"bench-{key.decode()}"}

        def delivered(error: Any, message: Any) -> None:
            if error is None:
                outcome.partition = message.partition()

        while True:
            try:
                self.producer.produce(self.topic, value=json.dumps(body).encode(), key=key, on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.01)
        self.producer.poll(0)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.producer.flush(5)
        self.consumer.close()


async def run_kafka(spec: dict[str, Any], requests: Requests) -> list[Step]:
    reads = CART_READS if spec.get("dialect") == "cart" else ()
    gateway = KafkaGateway(spec["bootstrap"], spec["topic"], trace=bool(spec.get("trace")), reads=reads)
    steps: list[Step] = []
    counter = 0

    async def run_step(rate: float, duration: float) -> Step:
        nonlocal counter
        step = Step(rate, duration)
        if spec.get("started_path"):
            # The orchestrator times its signal to a relay from the moment requests start, not from this start.
            open(spec["started_path"], "w").close()
        async for outcome in arrivals(step):
            gateway.send(requests.kafka(counter), outcome)
            counter += 1
        gateway.producer.flush(spec["timeout_s"])
        deadline = time.monotonic() + spec["timeout_s"]
        while time.monotonic() < deadline and any(o.done is None for o in step.outcomes):
            await asyncio.sleep(0.05)
        if gateway.answered is not None:
            await asyncio.sleep(spec.get("duplicate_wait_s", 0.0))  # late second answers are counted too
        with gateway.lock:
            gateway.pending.clear()  # what has not answered by now counts as no reply
        for o in step.outcomes:
            if o.done is None:
                o.ok, o.error = False, "timeout"
        step.wall_end = time.time()
        return step

    try:
        steps = await ramp_steps(spec, run_step)
    finally:
        gateway.close()
    return steps


def ramp(spec: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(rate), float(spec["step_s"])) for rate in spec["rates"]]


async def ramp_steps(spec: dict[str, Any], run_step: Any) -> list[Step]:
    """Raise the rate step by step until one breaks; a broken step is run once more before the ramp stops.

    The machine is shared: one burst of someone else's work can break a step on its own. Both attempts are kept
    and reported; the ramp goes on only if the repeat meets the budget.
    """
    steps: list[Step] = []
    plan = ramp(spec)
    index, repeated = 0, False
    while index < len(plan):
        rate, duration = plan[index]
        step = await run_step(rate, duration)
        steps.append(step)
        summary = step.summary(spec["slo_p99_ms"])
        progress(spec, summary)
        await asyncio.sleep(spec.get("pause_s", 1.0))
        if not summary["slo_met"] and spec.get("stop_on_break", True):
            if spec.get("repeat_broken", True) and not repeated:
                repeated = True
                # Let the service work off what the broken step left queued before it is measured again.
                await asyncio.sleep(spec.get("repeat_pause_s", 10.0))
                continue
            break
        index, repeated = index + 1, False
    return steps


def progress(spec: dict[str, Any], summary: dict[str, Any]) -> None:
    print(
        f"  {spec['name']:<14} {summary['rate']:>6g}/s → {summary['throughput_per_s']:>7.1f}/s "
        f"p50 {summary['p50_ms']} p99 {summary['p99_ms']} ms, errors {summary['errors']}/{summary['sent']}"
        f"{'' if summary['slo_met'] else '  (broken)'} {summary['error_kinds'] or ''}",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    spec = json.loads(sys.stdin.read())
    requests = Requests(spec)
    started = time.process_time()
    runner = run_kafka if spec["door"] == "kafka" else run_rest
    steps = asyncio.run(runner(spec, requests))
    result = {
        "name": spec["name"],
        "steps": [s.summary(spec["slo_p99_ms"]) for s in steps],
        "load_cpu_s": round(time.process_time() - started, 2),
    }
    if spec.get("trace") and steps:
        result["trace"] = steps[0].trace()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

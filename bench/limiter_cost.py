"""What the per-caller rate limiter costs one REST request, in process: `python -m bench.limiter_cost [--requests N]`.

The REST door (create_app) answers a read with its task stubbed, so that what is timed is the door and nothing
behind it; the same requests with RATE_LIMIT_SERVER off and on (counted in Redis, as deployed: a moving window, one
check per request). CPU time of this process per request (process_time: a busy shared machine stretches wall time,
not this), the best of interleaved rounds; the Redis server's own work is not in it. The bench's R1+limits phase
measures the same end to end, under load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import uuid
from typing import Any

from settings import DEFAULT_SERVER_RATE_LIMIT, get_settings

KEY = "limiter-cost-key"


def _app(limit: str, storage: str) -> Any:
    import api.routes
    from api import create_app

    api.routes.run_operation = lambda *_a, **_k: {"response": {"id": "vyre_stubbed"}}  # type: ignore[assignment]
    settings = dataclasses.replace(
        get_settings(),
        api_keys=(f"bench:{KEY}",),
        rate_limit_server=limit,
        rate_limit_callers={},
        rate_limit_webhooks="",
        rate_limit_storage=storage,
        kafka_group=f"vyp-limiter-cost-{uuid.uuid4().hex[:8]}",  # counters of its own
    )
    return create_app(settings)


def _cpu_per_request_ms(app: Any, requests: int) -> float:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {KEY}"}
    for _ in range(50):  # warm: connections, caches
        client.get("/refunds/vyre_x", headers=headers)
    started = time.process_time()
    for _ in range(requests):
        answer = client.get("/refunds/vyre_x", headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"answered {answer.status_code}: the limit must stay above the measured rate")
    return (time.process_time() - started) * 1000 / requests


def measure(requests: int = 2000, rounds: int = 3, storage: str | None = None) -> dict[str, Any]:
    """Best-of-rounds CPU per request with the limiter off and on, and the difference."""
    storage = storage or get_settings().redis_url or "memory://"
    off_app, on_app = _app("", storage), _app(DEFAULT_SERVER_RATE_LIMIT, storage)
    off, on = [], []
    for _ in range(rounds):
        off.append(_cpu_per_request_ms(off_app, requests))
        on.append(_cpu_per_request_ms(on_app, requests))
    return {
        "requests_per_round": requests,
        "limit": DEFAULT_SERVER_RATE_LIMIT,
        "storage": storage.split("@")[-1],  # never a password
        "off_ms": round(min(off), 3),
        "on_ms": round(min(on), 3),
        "added_ms": round(min(on) - min(off), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limiter_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", help="a limits storage URI; default: the service's Redis")
    args = parser.parse_args()
    print(json.dumps(measure(args.requests, args.rounds, args.storage)))


if __name__ == "__main__":
    main()

"""The burst phase's pure parts (issue 27, bench/bursts.py) and the stand-in's rate limit: fixed inputs, no service."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from bench import bursts
from bench.fake_stripe import AccountRateLimit, FakeStripe
from bench.workloads import phases

# [sent s, answered s, status, id or error code, replayed]: times from the burst's first scheduled request
RECORDS = [
    [0.0, 1.0, 201, "vypi_1", False],
    [0.01, 2.5, 201, "vypi_2", False],
    [0.02, 12.34, 201, "vypi_3", False],
    [0.03, 4.0, 201, "vypi_4", False],
]
STRIPE_OK = {"admitted": 4, "refused": 0, "peakPerSecond": 4, "intentsCreated": 4, "intentsCreatedTwice": 0}


def test_the_drain_time_runs_from_the_first_request_to_the_last_answer():
    fig = bursts.figures(RECORDS, drain_bound_s=120)
    assert fig["drain_s"] == 12.34
    assert fig["offered"] == fig["answered"] == fig["answered_201"] == 4
    assert fig["statuses"] == {"201": 4} and fig["duplicate_answers"] == 0
    assert fig["max_ms"] == 12320.0  # the slowest: sent at 0.02, answered at 12.34


def test_a_burst_with_an_unanswered_request_has_no_drain_time_and_fails():
    records = [*RECORDS, [0.04, None, None, "timeout", False]]
    fig = bursts.figures(records, drain_bound_s=120)
    assert fig["drain_s"] is None and fig["answered"] == 4
    assert fig["statuses"] == {"201": 4, "no answer": 1} and fig["errors"] == {"timeout": 1}
    failed = bursts.verdict(fig, {**STRIPE_OK, "intentsCreated": 5}, paced=True)
    assert "not drained within the bound" in failed and any("not answered 201" in f for f in failed)


def test_two_requests_answered_with_one_intent_or_a_replayed_answer_are_duplicates():
    records = [*RECORDS, [0.04, 3.0, 201, "vypi_2", False], [0.05, 3.1, 201, "vypi_6", True]]
    fig = bursts.figures(records, drain_bound_s=120)
    assert fig["duplicate_answers"] == 2
    assert any("not each request's own" in f for f in bursts.verdict(fig, {**STRIPE_OK, "intentsCreated": 6}, True))


def test_a_paced_burst_passes_only_when_every_request_is_answered_201_and_each_intent_made_once_at_the_stand_in():
    fig = bursts.figures(RECORDS, drain_bound_s=120)
    assert bursts.verdict(fig, STRIPE_OK, paced=True) == []
    twice = bursts.verdict(fig, {**STRIPE_OK, "intentsCreatedTwice": 1}, paced=True)
    assert twice == ["1 intents made twice at the stand-in"]
    refused = [*RECORDS[:3], [0.03, 4.0, 429, "rate_limited", False]]
    failed = bursts.verdict(bursts.figures(refused, 120), STRIPE_OK, paced=True)
    assert failed == ["1 of 4 not answered 201 ({'429 rate_limited': 1})"]


def test_429s_at_the_stand_in_are_counted_against_drill_22s_bound_but_do_not_fail_the_burst():
    fig = bursts.figures(RECORDS, drain_bound_s=120)
    many = {**STRIPE_OK, "refused": 3}
    assert bursts.verdict(fig, many, paced=True) == []
    assert not bursts.within_429_bound(4, many) and bursts.within_429_bound(4, {"refused": 2})
    assert bursts.stripe_429_bound(300) == 6 and bursts.stripe_429_bound(30) == 2


def test_the_unpaced_control_passes_only_when_the_stand_in_refused_something():
    fig = bursts.figures(RECORDS, drain_bound_s=120)
    assert bursts.verdict(fig, {**STRIPE_OK, "refused": 85}, paced=False) == []
    assert bursts.verdict(fig, STRIPE_OK, paced=False) == ["the stand-in refused nothing: the control did not bite"]


def test_the_table_shows_each_burst_its_429s_against_the_bound_and_its_result():
    fig = bursts.figures(RECORDS, drain_bound_s=120)
    row = {
        "name": "burst",
        "paced_at": "25",
        "stand_in_limit": 25,
        "rate_per_s": 100,
        "duration_s": 3.0,
        **fig,
        "stripe": {**STRIPE_OK, "refused": 8},
        "retried": 8,
        "requeued": 0,
        "load_avg": 2.1,
        "control": False,
        "failed": [],
        "passed": True,
    }
    control = {**row, "name": "burst+unpaced", "paced_at": None, "control": True, "passed": False, "failed": ["x"]}
    text = bursts.table([row, control])
    assert "| burst | 25 | 25 | 4 (100 x 3) | 4 | 4 |" in text
    assert "12, 8 (over 2), 4" in text and text.rstrip().endswith("| control: FAIL: x |")
    assert "| pass |" in text
    assert bursts.table([]) == "(no burst phase in this run)"


def test_the_burst_phases_pace_at_the_stand_ins_limit_are_outside_the_smoke_run_and_selectable_by_name():
    assert not any(bursts.is_burst(p) for p in phases(("amqp",), None, variants=False))
    chosen = phases(("amqp", "redis"), {"burst"})
    assert [(p.name, p.tag("burst"), dict(p.env)) for p in chosen] == [
        ("service-amqp-burst", "burst", {"STRIPE_RATE_LIMIT": str(bursts.BURST_LIMIT)}),
        ("service-amqp-burst-unpaced", "burst+unpaced", {"STRIPE_RATE_LIMIT": "0"}),
    ]
    assert [p.name for p in phases(("amqp",), {"burst+unpaced"})] == ["service-amqp-burst-unpaced"]


def test_the_stand_ins_limit_refuses_above_its_rate_per_account_and_refills():
    now = [100.0]
    limit = AccountRateLimit(5, clock=lambda: now[0])
    assert [limit.admit("sk_a") for _ in range(6)] == [True] * 5 + [False]
    assert limit.admit("sk_b")  # another account, a bucket of its own
    now[0] += 0.4  # two tokens back
    assert [limit.admit("sk_a") for _ in range(3)] == [True, True, False]
    assert (limit.admitted, limit.refused) == (8, 2)
    assert all(AccountRateLimit(0).admit("sk_a") for _ in range(100))  # 0: no limit


def test_the_stand_in_answers_a_call_over_its_limit_with_stripes_429_and_counts_intents_per_key():
    async def scenario() -> tuple[list[int], dict, dict]:
        async with TestClient(TestServer(FakeStripe(0.0).app())) as client:
            await client.post("/_config/rate_limit", json={"perSecond": 3})
            headers = {"Authorization": "Bearer sk_test_x"}
            statuses = []
            for i, ours in enumerate(["vypi_1", "vypi_2", "vypi_1", "vypi_3"]):
                form = {"amount": "100", "metadata[vy_payment_intent_id]": ours}
                answer = await client.post(
                    "/v1/payment_intents", data=form, headers={**headers, "Idempotency-Key": f"k{i}"}
                )
                statuses.append(answer.status)
                if answer.status == 429:
                    refusal = await answer.json()
                    assert answer.headers["Stripe-Should-Retry"] == "true"
            counts = await (await client.get("/_config/rate_limit")).json()
            return statuses, refusal, counts

    statuses, refusal, counts = asyncio.run(scenario())
    assert statuses == [200, 200, 200, 429]
    assert refusal["error"]["code"] == "rate_limit" and refusal["error"]["type"] == "invalid_request_error"
    assert counts["refused"] == 1 and counts["admitted"] == 3
    # vypi_1 was made under two keys: a second payment at Stripe; vypi_3 was refused, never made.
    assert counts["intentsCreated"] == 2 and counts["intentsCreatedTwice"] == 1 and counts["createKeys"] == 3

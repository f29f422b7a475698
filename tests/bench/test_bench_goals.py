"""Issue 27's goals are judged from one run's own figures, and a goal whose phase did not run says so."""

from __future__ import annotations

from typing import Any

from bench import goals


def _result(name: str, rate: float, p95: float = 10.0, p99: float = 20.0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "throughput_per_s": rate, "p95_ms": p95, "p99_ms": p99, **extra}


def _payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "stripe_latency_ms": 300.0,
        "results": [
            _result("B-nestjs", 1.0, p99=900.0),
            _result("W3-cart", 90.0, p99=450.0, baseline="B-nestjs"),
            _result(
                "W1", 100.0, p99=580.0, cpu_s_per_op_by_process={"web": 0.002, "worker": 0.005, "publisher": 0.0005}
            ),
            _result("W2", 75.0, p99=420.0, cpu_s_per_op_by_process={"relay": 0.001, "worker": 0.009}),
            _result("B-direct-rest", 400.0),
            _result("B-kafka-ceiling", 200.0),
            _result("R1", 200.0, p95=20.0),
            _result("R2", 150.0, p95=300.0),
            _result("R3", 100.0),
        ],
        "bursts": [
            {
                "name": "burst",
                "offered": 300,
                "answered_201": 300,
                "duplicate_answers": 0,
                "drain_s": 12.4,
                "stripe": {"refused": 0},
                "passed": True,
                "control": False,
            },
            {
                "name": "burst+unpaced",
                "offered": 300,
                "answered_201": 300,
                "duplicate_answers": 0,
                "drain_s": 16.1,
                "stripe": {"refused": 62},
                "passed": True,
                "control": True,
            },
        ],
    }
    return {**payload, **changes}


def _verdicts(payload: dict[str, Any]) -> dict[str, str]:
    return {goal: verdict for goal, _measured, verdict in goals.rows(payload)}


def test_each_goal_is_met_or_not_by_the_runs_own_figures():
    verdicts = _verdicts(_payload())
    assert verdicts["ours ≥ 50 x the original NestJS service (W3-cart)"] == "**met**"  # 90 x
    assert verdicts["W1 sustains 100 creates/s, p99 < 600 ms"] == "**met**"
    assert verdicts["W2 sustains 100 creates/s, p99 < 600 ms"] == "not met"  # 75/s
    assert verdicts["W1: our CPU per create ≤ 8 ms"] == "**met**"  # 7.5 ms
    assert verdicts["W2: our CPU per create ≤ 8 ms"] == "not met"  # 10 ms
    assert verdicts["R1 ≥ 0.6 x B-direct-rest"] == "not met"  # 0.5 x
    assert verdicts["R2 ≥ 0.8 x B-kafka-ceiling"] == "not met"  # 0.75 x
    assert verdicts["R1: p95 < 250 ms at its sustained rate"] == "**met**"
    assert verdicts["R2: p95 < 250 ms at its sustained rate"] == "not met"
    burst = [v for g, _m, v in goals.rows(_payload()) if g.startswith("a burst")]
    assert burst == ["**met**"]  # the unpaced control is not the goal's burst


def test_a_goal_whose_phase_did_not_run_says_so_instead_of_a_verdict():
    payload = _payload(results=[_result("W1", 100.0)], bursts=[])
    verdicts = _verdicts(payload)
    assert verdicts["ours ≥ 50 x the original NestJS service (creates, cart dialect)"] == "not run"
    assert verdicts["W2 sustains 100 creates/s, p99 < 600 ms"] == "not run"
    assert verdicts["R1 ≥ 0.6 x B-direct-rest"] == "not run"
    assert [v for g, _m, v in goals.rows(payload) if g.startswith("a burst")] == ["not run"]


def test_an_original_that_sustained_no_step_gives_no_ratio():
    payload = _payload()
    payload["results"][0] = _result("B-nestjs", 0.0)
    assert _verdicts(payload)["ours ≥ 50 x the original NestJS service (W3-cart)"] == "not run"
    assert "sustained no step" in goals.table(payload)

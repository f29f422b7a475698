"""The benchmark's pure computations (issue 17), from small fixed inputs: no service, no database, no timing."""

from __future__ import annotations

from pathlib import Path

from bench import capacity, report
from bench.moves import held_partitions, move_figures
from bench.run import base_name, copy_of
from bench.stack import statements_per_op
from bench.workloads import phases

ROOT = Path(__file__).resolve().parents[2]


def test_statements_per_op_subtracts_the_pollers_own_statements_and_keeps_a_missing_counter_apart():
    before = {"Questions": 1000, "Com_select": 400, "Com_insert": 10, "Com_commit": 5, "Com_begin": 5}
    after = {"Questions": 1620, "Com_select": 610, "Com_insert": 110, "Com_commit": 105, "Com_begin": 105}
    counts = statements_per_op(before, after, polls=10, ops=100)
    # 620 statements, 20 of them the poller's (2 per poll): 6 per op; 210 selects less 10 of the poller's.
    assert counts["Questions"] == 6.0
    assert counts["Com_select"] == 2.0
    assert counts["Com_insert"] == counts["Com_commit"] == counts["Com_begin"] == 1.0
    assert counts["Com_update"] is None  # not read: unknown, not zero


def test_held_partitions_follows_assignments_and_revocations_of_one_topic_only():
    log = "\n".join(
        [
            "INFO partitions assigned: get-payment-intent[0], get-payment-intent[1], get-payment-intent[2]",
            "INFO partitions revoked: get-payment-intent[0], get-payment-intent[1], get-payment-intent[2]",
            "INFO partitions assigned: get-payment-intent[2], get-payment-intent[3], create-refund[0]",
            "INFO partitions assigned: get-payment-intent-response[1]",
        ]
    )
    assert held_partitions(log, "get-payment-intent") == {2, 3}
    assert held_partitions(log, "create-refund") == {0}


def test_move_figures_time_the_first_answer_on_a_moved_partition_sent_after_the_signal_and_count_every_reply():
    signal_at = 100.0
    trace = [
        [99.0, 0, 99.01, 1],  # kept partition, before
        [99.5, 2, 99.52, 1],  # moved partition, answered before the signal
        [99.9, 2, 106.0, 2],  # moved, handed over by the killed relay and again by the survivor
        [100.5, 0, 100.6, 1],  # kept, after
        [101.0, 3, 107.5, 1],  # moved, after the signal: the survivor's first answer there
        [102.0, 3, None, 0],  # never answered
    ]
    figures = move_figures(trace, signal_at, {2, 3})
    assert figures["move_s"] == 7.5
    assert figures["sent"] == 6 and figures["answered"] == 5 and figures["lost"] == 1
    assert figures["duplicates"] == 1 and figures["requests_answered_twice_or_more"] == 1
    assert figures["sent_to_moved"] == 4
    assert figures["longest_gap_moved_s"] == round(106.0 - 99.52, 2)
    assert figures["worst_wait_moved_ms"] == 6500  # 101.0 -> 107.5


def test_a_copy_of_a_procfile_line_gets_its_own_node_name_and_metrics_ports():
    line = "METRICS_PORT=${WORKER_METRICS_PORT:-9101} python -m celery -A tasks.app worker -n payments@%h -P gevent"
    env = {"WORKER_METRICS_PORT": "1", "OTHER": "x"}
    assert copy_of("worker", line, env, 0) == ("worker", line, env)
    label, command, copy_env = copy_of("worker", line, env, 1)
    assert label == "worker-2" and base_name(label) == "worker"
    assert "-n payments-2@%h" in command
    assert copy_env["WORKER_METRICS_PORT"] != "1" and copy_env["OTHER"] == "x"


def test_the_scale_and_move_phases_are_outside_the_smoke_run_and_selectable_by_name():
    smoke = phases(("amqp",), None, variants=False)
    assert not any(p.scale or p.move for p in smoke)
    chosen = phases(("amqp",), {"W1+2worker", "R2+move"})
    assert [(p.name, p.workloads) for p in chosen] == [
        ("service-amqp-2worker", ("W1",)),
        ("service-amqp-move", ("R2",)),
    ]
    assert chosen[1].copies("relay") == 2 and dict(chosen[1].env)["KAFKA_TOPIC_PARTITIONS"] == "4"


RESULT = {
    "name": "W1",
    "throughput_per_s": 100.0,
    "p50_ms": 400.0,
    "db_connections_peak": 20,
    # seconds per create: web 2 ms, worker 5 ms (two copies), the idle relay 1 ms (not counted on the REST door)
    "cpu_s_per_op_by_process": {"web": 0.002, "worker": 0.003, "worker-2": 0.002, "reads": 0.0, "relay": 0.001},
    "other_cpu_s_per_op": {"mariadb": 0.001, "rabbitmq": 0.0005, "redis": 0.0002, "load": 0.5},
    "broker_cpu_s_per_op": 0.001,
    "db_statements_per_op": {"Questions": 6.0, "Com_commit": 1.0},
}


def test_the_capacity_model_is_computed_from_the_results_figures():
    [m] = capacity.model([RESULT], {"worker": 128, "reads": 32, "web": 1000})
    assert m["door"] == "REST" and set(m["cpu_ms_per_op"]) == {"web", "worker"}
    at_1000 = m["targets"]["1000"]
    # worker: 1000 x 5 ms / 0.7 = 7.14 cores -> 8 processes; in flight 1000 x 0.4 s = 400 over 128 x 0.7 -> 5.
    assert at_1000["processes"]["worker"] == {"count": 8, "by_cpu": 8, "by_in_flight": 5}
    assert at_1000["processes"]["web"]["count"] == 3  # 1000 x 2 ms / 0.7 = 2.9 cores
    assert at_1000["in_flight"] == 400.0
    assert at_1000["db_connections"] == 200  # 20 at 100/s, scaled
    assert at_1000["statements_per_s"] == 6000 and at_1000["commits_per_s"] == 1000
    assert at_1000["kafka_partitions"] is None  # the REST door reads no partition
    # RabbitMQ: 1 core x 0.7 / 0.5 ms = 1400/s; Redis 3500/s; MariaDB 16 x 0.7 / 1 ms = 11200/s.
    assert m["single_instance_ceiling_per_s"] == {"mariadb": 11200, "rabbitmq": 1400, "redis": 3500}
    assert m["first_to_run_out"] == "rabbitmq"
    assert m["targets"]["10000"]["runs_out"] == ["rabbitmq", "redis"]
    assert m["targets"]["100"]["runs_out"] == []
    text = capacity.table([m])
    assert "first to run out: rabbitmq" in text and "| worker processes (CPU / in-flight bound) | 1 (1 / 1) | 8" in text


def test_the_kafka_door_counts_the_relay_tansu_and_partitions():
    kafka = {**RESULT, "name": "W2"}
    [m] = capacity.model([kafka], {"worker": 128, "web": 1000})
    assert m["door"] == "Kafka" and "relay" in m["cpu_ms_per_op"] and "tansu" in m["shared_cpu_ms_per_op"]
    # 10 000 x 1 ms / 0.7 = 14.3 relay cores -> 15 relays -> at least 15 partitions.
    assert m["targets"]["10000"]["kafka_partitions"] == 15
    assert m["targets"]["100"]["kafka_partitions"] == capacity.DEFAULT_PARTITIONS
    assert m["targets"]["10000"]["processes"]["relay"]["by_in_flight"] is None  # it holds nothing in flight


def test_process_concurrency_reads_the_procfile_and_gunicorn_conf():
    found = capacity.process_concurrency(ROOT, payments_concurrency=100)
    assert found["reads"] == 32 and found["worker"] == 100 and found["web"] >= 1
    assert capacity.process_concurrency(ROOT)["worker"] >= 1  # settings.py's default


def test_the_scale_table_sets_two_processes_against_one():
    one = {**RESULT, "machine_cores_busy": 1.2}
    two = {**RESULT, "name": "W1+2worker", "throughput_per_s": 150.0, "machine_cores_busy": 1.8}
    text = report.scale_table([one, two])
    assert "| W1 | worker | 100.0 | 150.0 | 1.50 | 50.0 | 1.20 → 1.80 | worker (5.00 ms) |" in text


def test_round_two_puts_each_target_workload_beside_round_one_and_says_what_is_met():
    from bench.report import round_two_table

    def result(name: str, rate: float, p99: float, cpu: dict[str, float]) -> dict:
        return {
            "name": name,
            "throughput_per_s": rate,
            "p99_ms": p99,
            "cpu_s_per_op": sum(cpu.values()),
            "cpu_s_per_op_by_process": cpu,
        }

    old = [result("W1", 125, 438, {"web": 0.0017, "worker": 0.0055}), result("R2", 100, 30, {"reads": 0.003})]
    new = [
        result("W1", 250, 500, {"web": 0.0010, "worker": 0.0025}),
        result("R2", 300, 45, {"reads": 0.0019}),
        result("B-kafka-ceiling", 600, 40, {}),
    ]
    rows = round_two_table(new, old).splitlines()[2:]
    assert rows[0].startswith("| W1 | 125 -> 250 | 438 -> 500 | 7.20 -> 3.50 | -51 % | 3.6 |")
    assert "web 1.70 -> 1.00, worker 5.50 -> 2.50" in rows[0] and rows[0].endswith("| yes, yes |")
    # R2's rate target is a share of the same run's Kafka ceiling: 0.8 x 600 = 480/s, not reached at 300/s.
    assert ">= 0.8 x ceiling (480/s)" in rows[1] and rows[1].endswith("| yes, no |")
    assert len(rows) == 2  # a workload missing from either run has no row


def _step(rate: float, p99: float, met: bool = True, **more: object) -> dict:
    return {
        "rate": rate,
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "max_ms": p99,
        "errors": 0,
        "sent": 100,
        "ok": 100,
        "slo_met": met,
        **more,
    }


def test_the_low_rate_check_sets_the_light_steps_p99_against_the_sustained_steps_plus_the_margin():
    tailed = {"name": "R2", "low_rate": _step(20, 480.0), "steps": [_step(50, 42.0), _step(100, 198.0, met=False)]}
    clean = {"name": "W2", "low_rate": _step(5, 383.3), "steps": [_step(10, 362.3), _step(20, 371.3)]}
    text = report.low_rate_table([tailed, clean, {"name": "R1", "steps": [_step(100, 9.0)]}])
    assert "| R2 | 20 |" in text and "| 50 | 42.0 | NOT met (480.0 vs 142.0 ms) |" in text
    assert "| 20 | 371.3 | met (383.3 vs 471.3 ms) |" in text
    assert "| R1 |" not in text  # no light step: not in the table


def test_the_limiter_table_compares_web_cpu_at_the_highest_rate_both_runs_met():
    off = {"name": "R1", "steps": [_step(100, 9.0, cpu_s={"web": 0.2}), _step(200, 12.0, cpu_s={"web": 0.4})]}
    on = {
        "name": "R1+limits",
        "steps": [_step(100, 9.5, cpu_s={"web": 0.25}), _step(200, 70.0, met=False, cpu_s={"web": 0.6})],
    }
    text = report.limits_table([off, on])
    assert "| R1 | 100 | 2.00 → 2.50 | 0.50 |" in text
    line = report.limiter_cost_line(
        {
            "requests_per_round": 2000,
            "storage": "redis://h/1",
            "off_ms": 0.428,
            "on_ms": 0.9,
            "added_ms": 0.472,
            "limit": "5000/second",
        }
    )
    assert "0.428 → 0.900 ms CPU per request, +0.472 ms" in line

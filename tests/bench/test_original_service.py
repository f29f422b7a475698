"""Issue 27's baseline, the platform's original NestJS service: its build plan, its topics, its failure notes, the
cart dialect's replies, the stand-in's Customer calls, and the headline ratio line, from fixed inputs."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench import report
from bench.baselines.nestjs import (
    SERVICE,
    BuildFailed,
    failure_note,
    local_dependencies,
    subscribed_topics,
    topic_constants,
)
from bench.fake_stripe import FakeStripe, search_email
from bench.load import CART_READS, cart_create, kafka_reply
from bench.workloads import ORIGINAL_RATIO_TARGET, WORKLOADS, phases

MANIFESTS = {
    SERVICE: {
        "dependencies": {
            "ez-kafka-producer": "file:../../../libs/ez-kafka-producer",
            "ez-logger": "file:../../../libs/ez-logger",
            "ez-utils": "file:../../../libs/ez-utils",
            "stripe": "^18.3.0",
        }
    },
    "libs/ez-utils": {
        "dependencies": {"ez-kafka-producer": "file:../ez-kafka-producer", "ez-logger": "file:../ez-logger"}
    },
    "libs/ez-kafka-producer": {"dependencies": {"ez-logger": "file:../ez-logger", "kafkajs": "^2.2.4"}},
    "libs/ez-logger": {"dependencies": {"cli-color": "^2.0.4"}},
}


def test_the_libraries_are_built_before_the_packages_that_depend_on_them():
    order = local_dependencies(MANIFESTS.__getitem__, SERVICE)
    assert order == ["libs/ez-logger", "libs/ez-kafka-producer", "libs/ez-utils"]


def test_a_cycle_of_file_dependencies_is_a_build_failure_not_a_hang():
    cyclic = {**MANIFESTS, "libs/ez-logger": {"dependencies": {"ez-utils": "file:../ez-utils"}}}
    with pytest.raises(BuildFailed, match="cycle"):
        local_dependencies(cyclic.__getitem__, SERVICE)


def test_the_topics_are_those_the_controllers_answer_resolved_through_the_constants():
    constants = topic_constants(
        [
            "export const KT_CREATE_PAYMENT_INTENT = 'create-payment-intent';\nexport const KT_UNUSED = 'unused';",
            'export const KT_GET_REFUND = "get-refund";',
        ]
    )
    controllers = [
        "@MessagePattern(KT_CREATE_PAYMENT_INTENT)\n  async a() {}\n  @MessagePattern( KT_GET_REFUND )",
        "@MessagePattern(KT_NOT_A_KNOWN_CONSTANT)",
    ]
    assert subscribed_topics(controllers, constants) == ["create-payment-intent", "get-refund"]


def test_a_failed_build_step_names_the_step_the_place_and_npms_last_lines():
    output = "npm warn x\n\nnpm error code ENOTFOUND\nnpm error network request to registry failed\n"
    note = failure_note("npm ci --no-audit", "libs/ez-logger", 1, output)
    assert note.startswith("`npm ci --no-audit` in libs/ez-logger exited 1: ")
    assert note.endswith("npm error code ENOTFOUND / npm error network request to registry failed")
    assert "timed out" in failure_note("npm run build", SERVICE, None, "")
    assert len(failure_note("tsc", "x", 2, "e" * 5000)) < 500


def test_a_cart_request_names_a_new_person_each_time_in_the_web_apps_shape():
    first, second = cart_create("run1", 1), cart_create("run1", 2)
    assert first["customerDetails"]["email"] != second["customerDetails"]["email"]
    assert {"items", "customerDetails"} == first.keys()
    assert {"priceCents", "quantity", "currency", "id"} <= first["items"][0].keys()
    assert {"street", "city", "state", "zip", "country"} == first["customerDetails"]["address"].keys()


def test_a_cart_reply_counts_only_with_what_the_web_app_reads():
    assert kafka_reply({"response": {"clientSecret": "pi_1_secret_x", "paymentIntentId": "p"}}, CART_READS) == (
        True,
        None,
    )
    # The original answers success without a client secret when its Stripe call failed.
    assert kafka_reply({"response": {"success": True, "paymentIntentId": "p"}}, CART_READS) == (
        False,
        "missing clientSecret/paymentIntentId",
    )
    assert kafka_reply({"error": "Missing price or currency on item 1"}, CART_READS) == (
        False,
        "Missing price or currency on item 1",
    )
    assert kafka_reply({"error": {"code": "invalid_request"}}) == (False, "invalid_request")
    assert kafka_reply({"response": {"ok": True}}) == (True, None)


def test_a_customer_search_query_gives_its_email():
    assert search_email("email:'ada@example.com'") == "ada@example.com"
    assert search_email("email:'o\\'hara@example.com'") == "o'hara@example.com"
    assert search_email("name:'Ada'") is None


def test_the_stand_in_finds_a_created_customer_by_listing_and_searching_its_email():
    async def scenario() -> None:
        async with TestClient(TestServer(FakeStripe(0).app())) as client:
            email = "ada.1@example.com"
            assert (await (await client.get("/v1/customers/search", params={"query": f"email:'{email}'"})).json())[
                "data"
            ] == []
            form = {"email": email, "name": "Ada Lovelace", "address[line1]": "12 Harbour Road", "metadata[k]": "v"}
            made = await (await client.post("/v1/customers", data=form)).json()
            assert made["object"] == "customer" and made["id"].startswith("cus_")
            assert made["email"] == email and made["name"] == "Ada Lovelace" and made["metadata"] == {"k": "v"}
            assert made["address"]["line1"] == "12 Harbour Road" and made["address"]["city"] is None
            assert made["invoice_settings"]["default_payment_method"] is None
            found = await (await client.get("/v1/customers/search", params={"query": f"email:'{email}'"})).json()
            assert found["object"] == "search_result" and [c["id"] for c in found["data"]] == [made["id"]]
            listed = await (await client.get("/v1/customers", params={"email": email, "limit": "100"})).json()
            assert listed["object"] == "list" and [c["id"] for c in listed["data"]] == [made["id"]]
            other = await (await client.get("/v1/customers", params={"email": "ADA.1@example.com"})).json()
            assert other["data"] == [] and other["has_more"] is False

    asyncio.run(scenario())


def test_the_original_is_a_baseline_outside_the_smoke_run_and_ours_runs_beside_it():
    smoke = {n for p in phases(("amqp",), None, variants=False, original=False) for n in p.workloads}
    assert "B-nestjs" not in smoke and "W3" in smoke
    chosen = phases(("amqp", "redis"), {"B-nestjs", "W3"})
    assert [(p.name, p.kind, p.workloads) for p in chosen] == [
        ("nestjs", "nestjs", ("B-nestjs",)),
        ("service-amqp", "service", ("W3",)),
    ]
    ours, theirs = WORKLOADS["W3"], WORKLOADS["B-nestjs"]
    assert ours.baseline == "B-nestjs" and ours.dialect == theirs.dialect == "cart"
    assert ours.slo_p99_ms == theirs.slo_p99_ms and ours.request == theirs.request == "create-payment-intent"
    assert theirs.rates[0] < 1 and theirs.step_s


def _result(name: str, rate: float, p99: float | None, met: bool = True) -> dict:
    step = {"rate": 0.5, "throughput_per_s": 0.4, "p99_ms": 4200.0, "errors": 2, "sent": 10}
    return {"name": name, "throughput_per_s": rate if met else 0.0, "p99_ms": p99, "steps": [step]}


def test_the_headline_line_gives_both_rates_and_their_ratio_against_the_target():
    original = {"built": True, "commit": "6eaf82f54bf4aa", "note": "built earlier"}
    line = report.original_line([_result("W3", 92.0, 1250.0), _result("B-nestjs", 1.0, 1400.0)], original)
    assert line == (
        "**Ours (W3) 92.0/s (p99 1250 ms) against the original (B-nestjs) 1.0/s (p99 1400 ms): 92 x the original** "
        f"(issue 27 keeps it ≥ {ORIGINAL_RATIO_TARGET:.0f} x: met)."
    )
    low = report.original_line([_result("W3", 40.0, 1250.0), _result("B-nestjs", 1.0, 1400.0)], original)
    assert "40 x the original" in low and "NOT met" in low


def test_the_headline_line_says_why_the_original_was_not_measured():
    note = "`npm ci` in libs/ez-logger exited 1: npm error code ENOTFOUND"
    line = report.original_line([_result("W3", 92.0, 1250.0)], {"built": False, "commit": None, "note": note})
    assert line == f"The original service was not measured in this run: {note}. Ours (W3) 92.0/s (p99 1250 ms)."
    assert report.original_line([], None) == "(the original service's phase was not in this run)"


def test_the_headline_line_gives_no_ratio_when_the_original_met_no_step():
    line = report.original_line(
        [_result("W3", 92.0, 1250.0), _result("B-nestjs", 0.0, None, met=False)], {"built": True, "note": "x"}
    )
    assert "no step within the budget (at 0.5/s: 0.4/s done, p99 4200 ms, 2/10 errors)" in line
    assert line.endswith("no ratio (a side sustained no step).")
    assert " x the original" not in line

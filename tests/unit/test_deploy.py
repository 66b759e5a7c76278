"""deploy/ and docker-compose.yml agree with the code they run.

Metric names and labels in the dashboard, the metrics port, probe paths, setting names and
values, queue names and the shutdown grace are read from the worker itself, so renaming one in
the code breaks these tests rather than a deployment. scripts/validate-deploy.sh validates the
same files against real schemas; the last tests prove that it rejects broken copies.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase
from pydantic import AliasChoices

from tests.support import strings_under
from worker import observability
from worker.runtime.endpoints import HEALTH_PATH, METRICS_PATH, READY_PATH
from worker.runtime.partitions import Partitions
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DASHBOARD = ROOT / "deploy" / "grafana" / "profile-worker.json"
COMPOSE = ROOT / "docker-compose.yml"

# Series each metric type exports, after the family name (prometheus_client drops `_total`).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),  # prometheus_client exports no quantiles
}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus at scrape time
SELECTOR = re.compile(r"\b(profile_worker_\w+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def default(name: str) -> Any:
    return Settings.model_fields[name].default


def setting_variables() -> set[str]:
    """Every environment variable the worker reads a setting from."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(f"{prefix}{field}".upper())
    return names


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def resource(kind: str) -> dict[str, Any]:
    found = [doc for path in KUBERNETES.glob("*.yaml") for doc in documents(path)]
    found = [doc for doc in found if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {KUBERNETES}, found {len(found)}"
    return found[0]


def configmap() -> dict[str, str]:
    data: dict[str, str] = resource("ConfigMap")["data"]
    return data


def configured(name: str) -> Any:
    """The ConfigMap's value of a setting, else the worker's default."""
    return configmap().get(f"PW_{name.upper()}", default(name))


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod()["containers"]
    assert len(containers) == 1
    return containers[0]


def seconds(duration: str) -> float:
    """A compose duration such as 45s or 1m30s."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert duration
    assert parts, f"not a duration: {duration!r}"
    hours, minutes, secs = (float(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + secs


# --- the dashboard names only what the worker exports ---------------------------------------


def metrics() -> list[MetricWrapperBase]:
    return [m for m in vars(observability).values() if isinstance(m, MetricWrapperBase)]


def exported(metric: MetricWrapperBase) -> dict[str, set[str]]:
    """The series names `metric` exports → the labels each may be selected by."""
    (family,) = metric.describe()  # its name without `_total`, and its type
    labels = set(metric._labelnames) | TARGET_LABELS
    return {
        family.name + suffix: (labels | {"le"}) if suffix == "_bucket" else labels
        for suffix in SUFFIXES[family.type]
    }


def exported_series() -> dict[str, set[str]]:
    return {name: labels for metric in metrics() for name, labels in exported(metric).items()}


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    yield from strings_under(dashboard, frozenset({"expr", "definition"}))


@pytest.mark.parametrize("kind", [Counter, Gauge, Histogram, Summary])
def test_series_names_are_derived_as_prometheus_client_exports_them(
    kind: type[MetricWrapperBase],
) -> None:
    registry = CollectorRegistry()
    metric = kind("probe_total" if kind is Counter else "probe", "", ["queue"], registry=registry)
    child = metric.labels("q")
    if isinstance(child, Counter | Gauge):
        child.inc()
    else:
        assert isinstance(child, Histogram | Summary)
        child.observe(1)
    samples = {sample.name for family in registry.collect() for sample in family.samples}
    assert samples == set(exported(metric))


def test_every_metric_in_the_dashboard_is_exported_with_the_labels_used() -> None:
    series = exported_series()
    queries = list(dashboard_queries())
    assert queries
    for query in queries:
        used = SELECTOR.findall(query)
        assert used, f"no profile_worker_ metric in {query!r}"
        labels: set[str] = set()
        for name, matchers in used:
            assert name in series, f"{name} is not exported by worker.observability: {query!r}"
            assert set(MATCHER.findall(matchers)) <= series[name], query
            labels |= series[name]
        for grouping in GROUPING.findall(query):
            by = {label.strip() for label in grouping.split(",") if label.strip()}
            assert by <= labels, f"{by - labels} not a label of the metrics in {query!r}"


def test_the_dashboard_shows_every_metric() -> None:
    shown = {name for query in dashboard_queries() for name, _ in SELECTOR.findall(query)}
    missing = [metric for metric in metrics() if not shown & set(exported(metric))]
    assert not missing, f"no panel shows {missing}"


def test_the_dashboard_asks_for_a_prometheus_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 38
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


# --- Kubernetes -------------------------------------------------------------------------------


def test_the_metrics_port_is_the_workers() -> None:
    port = default("metrics_port")
    (named,) = [p for p in container()["ports"] if p["name"] == "metrics"]
    assert named["containerPort"] == port
    assert int(configured("metrics_port")) == port
    annotations = resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == METRICS_PATH
    (service_port,) = resource("Service")["spec"]["ports"]
    assert (service_port["port"], service_port["targetPort"]) == (port, "metrics")


@pytest.mark.parametrize(
    ("probe", "path"),
    [("startupProbe", HEALTH_PATH), ("livenessProbe", HEALTH_PATH), ("readinessProbe", READY_PATH)],
)
def test_probes_ask_the_workers_endpoints(probe: str, path: str) -> None:
    assert container()[probe]["httpGet"] == {"path": path, "port": "metrics"}


def test_the_pod_outlives_the_workers_shutdown_grace() -> None:
    grace = float(configured("shutdown_grace_seconds"))
    assert pod()["terminationGracePeriodSeconds"] > grace


def test_configured_variables_are_settings_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = setting_variables()
    secret = resource("Secret")["stringData"]
    env = {item["name"] for item in container().get("env", [])}
    for name in [*configmap(), *secret, *env]:
        assert name in variables, f"{name} is not a setting of worker/settings.py"
    for name, value in {**configmap(), **secret}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.metrics_port == default("metrics_port")


def test_the_pod_reads_the_configmap_and_the_secret() -> None:
    sources = container()["envFrom"]
    assert {"configMapRef": {"name": resource("ConfigMap")["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": resource("Secret")["metadata"]["name"]}} in sources


def test_the_pod_runs_locked_down_as_the_images_user() -> None:
    context = pod()["securityContext"]
    assert context["runAsNonRoot"] is True
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    user = re.search(r"^USER (\d+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert user, "the image's USER must be numeric for runAsNonRoot"
    assert context["runAsUser"] == int(user[1])


def test_keda_scales_the_deployment_on_the_command_queues_and_their_partitions() -> None:
    scaled = resource("ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == resource("Deployment")["metadata"]["name"]
    assert scaled["minReplicaCount"] >= 1  # relations_query needs a running worker
    count = int(configured("partitions"))
    assert scaled["maxReplicaCount"] == count, "a replica beyond P holds no partition"
    commands = [configured("import_queue"), configured("relations_queue")]
    # with P = 1 the command queue is its own partition
    partitions = {name for queue in commands for name in Partitions(queue, count).names}
    triggers = {trigger["metadata"]["queueName"]: trigger for trigger in scaled["triggers"]}
    assert len(triggers) == len(scaled["triggers"]), "one trigger per queue"
    assert set(triggers) == {*commands, *partitions}
    (per_replica,) = {int(triggers[queue]["metadata"]["value"]) for queue in commands}
    for name in partitions - set(commands):
        assert int(triggers[name]["metadata"]["value"]) == math.ceil(per_replica / count)
    auth = resource("TriggerAuthentication")
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    (host,) = auth["spec"]["secretTargetRef"]
    assert host["parameter"] == "host"
    assert host["name"] == resource("Secret")["metadata"]["name"]
    assert host["key"] in resource("Secret")["stringData"]
    assert host["key"] in setting_variables()


def test_the_disruption_budget_selects_the_workers() -> None:
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert resource("Service")["spec"]["selector"].items() <= labels.items()


# --- docker compose, systemd, the image ---------------------------------------------------------


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, service in compose().items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_compose_worker_starts_after_healthy_services_and_drains_before_a_kill() -> None:
    worker = compose()["worker"]
    assert worker["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "mongodb": {"condition": "service_healthy"},
    }
    environment = worker["environment"]
    assert set(environment) <= setting_variables()
    grace = float(environment.get("PW_SHUTDOWN_GRACE_SECONDS", default("shutdown_grace_seconds")))
    assert seconds(worker["stop_grace_period"]) > grace
    port = environment.get("PW_METRICS_PORT", default("metrics_port"))
    check = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}{HEALTH_PATH}" in check
    assert "urllib" in check


def test_compose_mongodb_is_a_replica_set_the_worker_reaches() -> None:
    services = compose()
    mongodb = services["mongodb"]
    command = mongodb["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    check = " ".join(mongodb["healthcheck"]["test"])
    assert "rs.initiate" in check
    assert "isWritablePrimary" in check
    url = urlsplit(services["worker"]["environment"]["MONGODB_URL"])
    assert url.hostname in services
    options = parse_qs(url.query)
    assert options.get("directConnection") == ["true"] or options.get("replicaSet") == ["rs0"]
    assert urlsplit(services["worker"]["environment"]["AMQP_URL"]).hostname in services


def test_compose_rabbitmq_has_the_management_api_the_partitions_command_reads() -> None:
    rabbitmq = compose()["rabbitmq"]
    assert rabbitmq["image"].endswith("-management")
    assert "127.0.0.1:15672:15672" in rabbitmq["ports"]


def test_systemd_waits_longer_than_the_shutdown_grace() -> None:
    unit = (ROOT / "deploy" / "profile-worker.service").read_text()
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    assert timeout
    assert int(timeout[1]) > default("shutdown_grace_seconds")
    assert re.search(r"^ExecStart=\S*profile-worker run$", unit, re.M)


def test_the_example_environment_names_settings() -> None:
    lines = (ROOT / "deploy" / "env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert names <= setting_variables()


def test_the_image_checks_the_health_endpoint() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(rf"^HEALTHCHECK .*{HEALTH_PATH}", dockerfile, re.M | re.S)


# --- scripts/validate-deploy.sh rejects what is broken ------------------------------------------

BROKEN = [
    ("deploy/kubernetes/deployment.yaml", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:"),
    ("deploy/kubernetes/deployment.yaml", "periodSeconds: 10", 'periodSeconds: "10"'),
    ("deploy/kubernetes/service.yaml", "kind: Service", "kind: Servce"),
    ("deploy/kubernetes/scaledobject.yaml", "minReplicaCount:", "minReplicas:"),
    ("deploy/kubernetes/scaledobject.yaml", 'value: "10000"', "value: 10000"),
    ("deploy/kubernetes/triggerauthentication.yaml", "key: AMQP_URL", "keys: AMQP_URL"),
    ("deploy/kubernetes/kustomization.yaml", "  - service.yaml\n", ""),
    ("docker-compose.yml", "stop_grace_period:", "stop_grace_periods:"),
    ("deploy/grafana/profile-worker.json", "[$__rate_interval]))", "[$__rate_interval])"),
    (
        "deploy/kubernetes-rabbitmq-cluster-operator/rabbitmqcluster.yaml",
        "replicas: 3",
        'replicas: "3"',
    ),
    ("deploy/kubernetes-rabbitmq-cluster-operator/permission.yaml", "userReference:", "userRef:"),
]


def validate(root: Path) -> subprocess.CompletedProcess[str]:
    """The script, with the caller's environment: its tools cache is the developer's."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "validate-deploy.sh"), str(root)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=840,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    return tmp_path


# The first run builds and fetches the validators (about a minute); later runs take a second.
@pytest.mark.timeout(900)
def test_validate_deploy_accepts_the_tree(tree: Path) -> None:
    result = validate(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("path", "old", "new"), BROKEN, ids=[f"{p}:{n!r}" for p, _, n in BROKEN])
def test_validate_deploy_rejects_a_broken_file(tree: Path, path: str, old: str, new: str) -> None:
    target = tree / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    result = validate(tree)
    assert result.returncode != 0, result.stdout + result.stderr
    assert Path(path).name in result.stdout + result.stderr

"""docker-compose.yml, checked without Docker: every service, file, port and address fits together.

Our machines cannot run containers, so this reads the compose file next to the configurations it
mounts (collector-config/, dashboards/) and the pins the project's own tests run.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.stack import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INFRASTRUCTURE = {"kafka", "rabbitmq", "collector", "jaeger", "prometheus", "grafana"}
DEMO = {"order-service", "inventory-service", "notification-service", "points-service", "user-service",
        "recommendation-service"}
HTTP_DEMO = {"order-service": 8080, "user-service": 8081}
# The collector image has no shell and no HTTP client: nothing can probe it from inside.
NOT_PROBED = {"collector"} | (DEMO - set(HTTP_DEMO))


def env(service: str) -> dict[str, str]:
    value = SERVICES[service].get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {k: str(v) for k, v in value.items()}


def mounts(service: str) -> dict[str, str]:
    """Container path -> repository path of each bind mount."""
    result = {}
    for volume in SERVICES[service].get("volumes") or []:
        source, target = volume.split(":")[:2]
        result[target] = source
    return result


def mounted_file(service: str, target: str) -> Path:
    """The repository file a container sees at ``target`` (through a file or a folder mount)."""
    for container_path, source in mounts(service).items():
        if target == container_path or target.startswith(container_path.rstrip("/") + "/"):
            return REPO_ROOT / source / target[len(container_path):].lstrip("/")
    raise AssertionError(f"{service}: nothing is mounted at {target}")


def config(service: str, target: str) -> Any:
    return yaml.safe_load(mounted_file(service, target).read_text())


def env_default(value: str) -> str:
    """``${env:NAME:-default}`` -> default (what the config uses when compose sets nothing)."""
    match = re.fullmatch(r"\$\{env:(\w+):-(.*)\}", value)
    return match.group(2) if match else value


def setting(service: str, value: str) -> str:
    """A config value as the container sees it: the compose environment, else the default."""
    match = re.fullmatch(r"\$\{env:(\w+):-(.*)\}", value)
    if not match:
        return value
    return env(service).get(match.group(1), match.group(2))


def host_port(address: str) -> tuple[str, int]:
    if "://" not in address:
        address = "tcp://" + address
    parts = urlsplit(address)
    return parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)


def published(service: str) -> dict[int, int]:
    """Container port -> host port."""
    result = {}
    for port in SERVICES[service].get("ports") or []:
        host, container = str(port).split(":")[-2:]
        result[int(container)] = int(host)
    return result


def flag(service: str, name: str) -> str:
    command = SERVICES[service]["command"]
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{service}: no {name} in its command")


COLLECTOR = config("collector", flag("collector", "--config"))
JAEGER = config("jaeger", flag("jaeger", "--config"))
PROMETHEUS = config("prometheus", flag("prometheus", "--config.file"))


def test_compose_runs_the_stack_and_every_demo_service():
    assert set(SERVICES) == INFRASTRUCTURE | DEMO


def test_every_image_is_pinned_to_a_version():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.match(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_infrastructure_runs_the_versions_the_projects_tests_run():
    pom = (REPO_ROOT / "scripts/kafka/pom.xml").read_text()
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{re.search(r'<kafka.version>(.+)<', pom).group(1)}"
    manifest = (REPO_ROOT / "scripts/collector/manifest.yaml").read_text()
    contrib = re.search(r"opentelemetry-collector-contrib/\S+ v(\S+)", manifest).group(1)
    assert SERVICES["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{contrib}"
    # Jaeger's Go module tag v1.N is the same commit as its v2 release (v1.76.0 = 2.13.0).
    go_mod = (REPO_ROOT / "scripts/jaeger/go.mod").read_text()
    assert re.search(r"github.com/jaegertracing/jaeger v1\.76\.0\b", go_mod)
    assert SERVICES["jaeger"]["image"] == "jaegertracing/jaeger:2.13.0"


def test_every_mounted_file_or_folder_exists():
    for name in SERVICES:
        for target, source in mounts(name).items():
            assert source.startswith("./"), f"{name}: {source} is not a path in the repository"
            assert (REPO_ROOT / source).exists(), f"{name} mounts {source} at {target}: it does not exist"


def test_every_service_that_can_be_probed_has_a_healthcheck():
    for name, service in SERVICES.items():
        if name not in NOT_PROBED:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_services_wait_for_health_only_where_a_healthcheck_exists_and_never_in_a_cycle():
    for name, service in SERVICES.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            assert condition["condition"] in ("service_started", "service_healthy")
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}'s health: it has none"
    order: list[str] = []
    while len(order) < len(SERVICES):
        ready = [n for n, s in SERVICES.items()
                 if n not in order and set(s.get("depends_on") or {}) <= set(order)]
        assert ready, f"depends_on cycle among {set(SERVICES) - set(order)}"
        order += ready
    for name in DEMO:
        assert SERVICES[name]["depends_on"]["kafka"] == {"condition": "service_healthy"}


HOST_PORTS = [port for name in SERVICES for port in published(name).values()]


def test_published_host_ports_are_unique():
    assert len(HOST_PORTS) == len(set(HOST_PORTS))
    assert {16686, 3000} <= set(HOST_PORTS)  # the Jaeger UI and Grafana: the path for Docker users


@pytest.mark.parametrize("readme", ["examples/README.md", "README.md"])
def test_every_published_port_is_documented(readme):
    text = (REPO_ROOT / readme).read_text()
    missing = [port for port in HOST_PORTS if not re.search(rf"\b{port}\b", text)]
    assert not missing, f"{readme} does not mention the published ports {missing}"


def test_demo_services_send_spans_to_the_collectors_otlp_receiver():
    grpc = setting("collector", COLLECTOR["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    http = setting("collector", COLLECTOR["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    for name in DEMO:
        assert env(name)["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert host_port(env(name)["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("collector", host_port(grpc)[1])
    # ... and so can services on the host, as with the local stack.
    assert published("collector") == {host_port(grpc)[1]: 4317, host_port(http)[1]: 4318}


def test_the_collector_exports_traces_to_jaegers_otlp_receiver():
    exporters = [e for e in COLLECTOR["service"]["pipelines"]["traces"]["exporters"] if e.startswith("otlp")]
    assert exporters
    jaeger_grpc = setting("jaeger", JAEGER["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    for exporter in exporters:
        target = setting("collector", COLLECTOR["exporters"][exporter]["endpoint"])
        assert host_port(target) == ("jaeger", host_port(jaeger_grpc)[1])


def test_the_jaeger_ui_and_api_are_published_and_probed_where_its_config_puts_them():
    query = setting("jaeger", JAEGER["extensions"]["jaeger_query"]["http"]["endpoint"])
    assert published("jaeger") == {host_port(query)[1]: 16686}
    health = setting("jaeger", JAEGER["extensions"]["healthcheckv2"]["http"]["endpoint"])
    assert f"localhost:{host_port(health)[1]}/" in " ".join(SERVICES["jaeger"]["healthcheck"]["test"])
    prometheus = setting("jaeger", JAEGER["extensions"]["jaeger_storage"]["metric_backends"]["spm_prometheus"]
                         ["prometheus"]["endpoint"])
    assert host_port(prometheus) == ("prometheus", 9090)


def test_prometheus_scrapes_the_collectors_metrics_endpoints():
    exporter = setting("collector", COLLECTOR["exporters"]["prometheus"]["endpoint"])
    reader = COLLECTOR["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    expected = {("collector", host_port(exporter)[1]), ("collector", int(env_default(str(reader["port"]))))}
    targets = {host_port(t) for job in PROMETHEUS["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}
    assert targets == expected
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]
    assert published("prometheus") == {9090: 9090}


def test_grafana_is_provisioned_with_the_dashboards_and_the_compose_datasources():
    provisioning = "/etc/grafana/provisioning"
    datasources = config("grafana", f"{provisioning}/datasources/datasources.yaml")["datasources"]
    urls = {d["uid"]: host_port(d["url"]) for d in datasources}
    query = setting("jaeger", JAEGER["extensions"]["jaeger_query"]["http"]["endpoint"])
    assert urls == {"prometheus": ("prometheus", 9090), "jaeger": ("jaeger", host_port(query)[1])}
    (provider,) = config("grafana", f"{provisioning}/dashboards/dashboards.yaml")["providers"]
    dashboards = sorted(mounted_file("grafana", provider["options"]["path"]).glob("*.json"))
    assert dashboards, "the dashboard provider's folder holds no dashboard"
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file("grafana", home) in dashboards


def test_demo_services_reach_kafka_on_its_advertised_listener():
    advertised = env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in DEMO:
        assert f"PLAINTEXT://{env(name)['KAFKA_BOOTSTRAP']}" in advertised
    assert "HOST://localhost:19092" in advertised and published("kafka") == {19092: 19092}
    assert "localhost:9092" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])


def test_demo_services_run_the_packaged_service_modules_on_their_published_ports():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile
    for name in DEMO:
        module = SERVICES[name]["command"][0]
        assert module == f"tracing.demo.services.{name.removesuffix('-service')}"
        assert importlib.util.find_spec(module) is not None, module
    for name, port in HTTP_DEMO.items():
        assert int(flag(name, "--http-port")) == port and flag(name, "--http-host") == "0.0.0.0"
        assert published(name) == {port: port}
        assert SERVICES[name]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/health"


def test_the_demo_image_is_built_from_files_in_the_repository():
    for name in DEMO:
        assert SERVICES[name]["build"] == "."
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}: it does not exist"

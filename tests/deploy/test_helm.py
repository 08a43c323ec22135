"""The Helm chart: lint, render, validate against Kubernetes schemas, and check what it renders."""

from __future__ import annotations

import base64
import copy
import os
import re
import signal
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from gateway.server.cli import main as tandem_main
from tests.deploy.conftest import (
    ALL_ON_VALUES,
    CHART,
    COLLAB_VALUES,
    KUBE_VERSIONS,
    NO_KEYS_VALUES,
    RELEASE,
    Render,
    Rendered,
    load_yaml,
    run_helm,
    venv_tool,
)
from tests.servers import closed_port

VALUE_SETS = {
    "default": (NO_KEYS_VALUES,),
    "all-on": (ALL_ON_VALUES,),
    "collab": (COLLAB_VALUES,),
}
CRD_KINDS = {"ServiceMonitor"}
FULLNAME = f"{RELEASE}-tandem"


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def deployments(rendered: Rendered) -> list[dict[str, Any]]:
    return rendered.all("Deployment")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_strict_passes(helm: str, values: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in values:
        args += ["--values", str(path)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_passes_kubernetes_validate_strict(
    render: Render, tmp_path: Path, values: tuple[Path, ...], kube: str
) -> None:
    rendered = render(*values, kube=kube)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered.text)
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "-k", kube, "--strict", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every built-in kind was checked (none skipped for want of a schema); CRDs are checked below.
    builtin = [doc for doc in rendered.docs if doc["kind"] not in CRD_KINDS]
    assert output.count("passed for resource") == len(builtin), output
    for doc in rendered.docs:
        if doc["kind"] in CRD_KINDS:
            assert f"kind {doc['kind']}" in output
    assert "ERROR" not in output


def test_kubernetes_validate_strict_rejects_an_unknown_field(
    all_on: Rendered, tmp_path: Path
) -> None:
    """The validator really is strict: a misspelt field in the Deployment fails it."""
    doc = copy.deepcopy(all_on.gateway())
    container = pod_spec(doc)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "-k", KUBE_VERSIONS[-1], "--strict", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


def test_service_monitor_matches_the_prometheus_operator_crd(all_on: Rendered) -> None:
    """kubernetes-validate has no CRD schemas; the operator's generated models check this one."""
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    def round_trip(doc: dict[str, Any]) -> dict[str, Any]:
        # The models ignore unknown fields: a round trip that loses nothing had none.
        dumped: dict[str, Any] = ServiceMonitor.model_validate(doc).model_dump(
            by_alias=True, exclude_unset=True, mode="json"
        )
        return dumped

    doc = all_on.one("ServiceMonitor")
    assert round_trip(doc) == doc
    typo = copy.deepcopy(doc)
    typo["spec"]["endpoints"][0]["paht"] = "/metrics"
    assert round_trip(typo) != typo

    service = all_on.one("Service", "gateway")
    selector = doc["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = doc["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_default_values_render_the_core_only(default: Rendered) -> None:
    kinds = sorted(doc["kind"] for doc in default.docs)
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    )
    assert default.gateway()["spec"]["replicas"] == 2


def test_all_on_renders_every_optional_part(all_on: Rendered) -> None:
    for kind, component in [
        ("Deployment", "gateway"),
        ("Deployment", "vllm"),
        ("Deployment", "redis"),
        ("Service", "gateway"),
        ("Service", "vllm"),
        ("Service", "redis"),
        ("HorizontalPodAutoscaler", "gateway"),
        ("PodDisruptionBudget", "gateway"),
        ("ServiceMonitor", "gateway"),
        ("Secret", "gateway"),
        ("ConfigMap", "gateway"),
    ]:
        all_on.one(kind, component)


@pytest.mark.parametrize("name", ["default", "all_on"])
def test_probes_point_at_the_health_endpoints(name: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(name)
    container = rendered.gateway_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert str(ports["http"]) == env_of(container)["TANDEM_PORT"]["value"]
    assert env_of(container)["TANDEM_HOST"]["value"] == "0.0.0.0"
    expected = [("startupProbe", "/healthz"), ("livenessProbe", "/healthz")]
    for probe, path in [*expected, ("readinessProbe", "/readyz")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    startup = container["startupProbe"]
    # Models are prepared at first start (a minute or two on CPU): allow several minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # /readyz waits up to 5 s for each backend.
    assert container["readinessProbe"]["timeoutSeconds"] > 5


def catalog_mount(rendered: Rendered) -> tuple[str, dict[str, Any]]:
    """(the file path the catalog ConfigMap appears at in the pod, that ConfigMap)."""
    deployment = rendered.gateway()
    container = rendered.gateway_container()
    volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
    configmaps = {doc["metadata"]["name"]: doc for doc in rendered.all("ConfigMap")}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        assert mount.get("readOnly") is True
        assert "subPath" not in mount, "subPath mounts miss ConfigMap updates"
        (item,) = source["items"]
        configmap = configmaps[source["name"]]
        assert item["key"] in configmap["data"]
        return str(PurePosixPath(mount["mountPath"]) / item["path"]), configmap
    raise AssertionError("no ConfigMap is mounted in the gateway container")


@pytest.mark.parametrize("catalog_path", [None, "/srv/tandem/conf/models.yaml"])
def test_catalog_configmap_is_mounted_where_tandem_config_points(
    render: Render, catalog_path: str | None
) -> None:
    sets = {} if catalog_path is None else {"config.catalogPath": catalog_path}
    rendered = render(NO_KEYS_VALUES, **sets)
    tandem_config = env_of(rendered.gateway_container())["TANDEM_CONFIG"]["value"]
    path, _ = catalog_mount(rendered)
    assert path == tandem_config
    if catalog_path is not None:
        assert tandem_config == catalog_path


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("name", "aliases"),
    [
        ("default", ["echo"]),
        ("all_on", ["echo", "large"]),
        ("collab", ["large", "tandem-collab", "tandem-hawkeye"]),
    ],
)
def test_rendered_catalog_passes_tandem_check(
    name: str,
    aliases: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rendered: Rendered = request.getfixturevalue(name)
    _, configmap = catalog_mount(rendered)
    (text,) = configmap["data"].values()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(text)
    assert tandem_main(["check", "--config", str(catalog)]) == 0
    assert capsys.readouterr().out.strip() == f"catalog ok: {', '.join(aliases)}"


def test_all_on_catalog_reaches_the_bundled_vllm_service(all_on: Rendered) -> None:
    _, configmap = catalog_mount(all_on)
    catalog = yaml.safe_load(configmap["data"]["catalog.yaml"])
    service = all_on.one("Service", "vllm")
    (port,) = service["spec"]["ports"]
    large = catalog["backends"]["large"]
    assert large["base_url"] == f"http://{service['metadata']['name']}:{port['port']}/v1"
    vllm = all_on.one("Deployment", "vllm")
    args = pod_spec(vllm)["containers"][0]["args"]
    assert args[args.index("--served-model-name") + 1] == large["model"]


def test_collab_reaches_the_vllm_replicas_through_the_router(collab: Rendered) -> None:
    _, configmap = catalog_mount(collab)
    catalog = yaml.safe_load(configmap["data"]["catalog.yaml"])
    router = collab.one("Deployment", "vllm-router")
    service = collab.one("Service", "vllm-router")
    (port,) = service["spec"]["ports"]
    large = catalog["backends"]["large"]
    assert large["base_url"] == f"http://{service['metadata']['name']}:{port['port']}/v1"
    assert {m["policy"] for m in catalog["models"].values()} == {"collab", "hawkeye", "direct"}
    vllm = collab.one("Deployment", "vllm")
    assert vllm["spec"]["replicas"] == 2
    args = pod_spec(router)["containers"][0]["args"]
    assert args[args.index("--policy") + 1] == "consistent_hash"
    # the router's service discovery selects exactly the vLLM pods
    selector = dict(a.split("=", 1) for a in args[args.index("--selector") + 1 :] if "=" in a)
    pod_labels = vllm["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert selector["app.kubernetes.io/component"] == "vllm"
    assert args[args.index("--service-discovery-port") + 1] == str(
        vllm["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    )
    vllm_args = pod_spec(vllm)["containers"][0]["args"]
    assert "--enable-prefix-caching" in vllm_args
    assert int(vllm_args[vllm_args.index("--max-logprobs") + 1]) >= 20


def test_the_router_may_only_read_pods_with_its_own_account(collab: Rendered) -> None:
    router = collab.one("Deployment", "vllm-router")
    account = pod_spec(router)["serviceAccountName"]
    (role,) = collab.all("Role")
    (binding,) = collab.all("RoleBinding")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert [s["name"] for s in binding["subjects"]] == [account]
    assert pod_spec(collab.gateway())["serviceAccountName"] != account
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["ingress"][0]["from"]
        for p in collab.all("NetworkPolicy")
    }
    sources = {
        name: sorted(s["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for s in rule)
        for name, rule in policies.items()
    }
    assert sources == {"vllm": ["gateway", "vllm-router"], "vllm-router": ["gateway"]}


def secret_strings(values: list[str]) -> set[str]:
    joined = "\n".join(values) + "\n"
    return {*values, base64.b64encode(joined.encode()).decode()}


def test_api_keys_from_values_live_only_in_a_secret(all_on: Rendered) -> None:
    keys = load_yaml(ALL_ON_VALUES)["apiKeys"]["values"]
    secret = all_on.one("Secret")
    (encoded,) = secret["data"].values()
    assert base64.b64decode(encoded).decode().splitlines() == keys
    for doc in all_on.docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for secret_text in secret_strings(keys):
            assert secret_text not in text, f"{doc['kind']} holds an API key"
    container = all_on.gateway_container()
    env = env_of(container)
    assert "TANDEM_API_KEYS" not in env
    key_file = PurePosixPath(env["TANDEM_API_KEYS_FILE"]["value"])
    volumes = {volume["name"]: volume for volume in pod_spec(all_on.gateway())["volumes"]}
    mounts = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    (mount,) = mounts
    source = volumes[mount["name"]]["secret"]
    assert source["secretName"] == secret["metadata"]["name"]
    assert PurePosixPath(mount["mountPath"]) / source["items"][0]["path"] == key_file
    assert source["items"][0]["key"] in secret["data"]


def test_existing_secrets_are_referenced_by_name_and_key(render: Render) -> None:
    rendered = render(
        **{
            "apiKeys.secretName": "tandem-keys",
            "apiKeys.secretKey": "keys.txt",
            "redis.external.secretName": "redis-conn",
            "redis.external.secretKey": "url",
        }
    )
    assert rendered.all("Secret") == []
    assert [d for d in deployments(rendered) if d["metadata"]["name"].endswith("-redis")] == []
    env = env_of(rendered.gateway_container())
    assert env["TANDEM_REDIS_URL"] == {
        "name": "TANDEM_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis-conn", "key": "url"}},
    }
    secret_volumes = [v["secret"] for v in pod_spec(rendered.gateway())["volumes"] if "secret" in v]
    assert secret_volumes == [
        {
            "secretName": "tandem-keys",
            "defaultMode": 0o440,
            "items": [{"key": "keys.txt", "path": "api-keys"}],
        }
    ]


def test_serving_without_keys_needs_an_explicit_value(helm: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART))
    assert result.returncode != 0
    assert "apiKeys.allowUnauthenticated=true to serve without keys" in result.stderr


def test_no_api_keys_means_no_key_file(default: Rendered) -> None:
    env = env_of(default.gateway_container())
    assert "TANDEM_API_KEYS_FILE" not in env
    assert "TANDEM_REDIS_URL" not in env


def test_bundled_redis_is_reached_through_its_service(all_on: Rendered) -> None:
    service = all_on.one("Service", "redis")
    env = env_of(all_on.gateway_container())
    url = env["TANDEM_REDIS_URL"]["value"]
    assert url == f"redis://:$(REDIS_PASSWORD)@{service['metadata']['name']}:6379/0"
    names = list(env)  # Kubernetes expands $(VAR) only from variables defined before it
    assert names.index("REDIS_PASSWORD") < names.index("TANDEM_REDIS_URL")
    redis = pod_spec(all_on.one("Deployment", "redis"))["containers"][0]
    assert "--save" in redis["args"]
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]


def test_redis_evicts_only_expiring_keys_and_asks_for_a_password(
    all_on: Rendered, render: Render
) -> None:
    redis = pod_spec(all_on.one("Deployment", "redis"))["containers"][0]
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lru"  # buckets never expire
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    secret = {"name": "redis-password", "key": "password"}
    gateway_env, redis_env = env_of(all_on.gateway_container()), env_of(redis)
    for env, name in (
        (redis_env, "REDIS_PASSWORD"),
        (redis_env, "REDISCLI_AUTH"),
        (gateway_env, "REDIS_PASSWORD"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == secret
    open_redis = render(NO_KEYS_VALUES, **{"redis.bundled.enabled": True})
    plain = pod_spec(open_redis.one("Deployment", "redis"))["containers"][0]
    assert "--requirepass" not in plain["args"]
    assert "env" not in plain
    url = env_of(open_redis.gateway_container())["TANDEM_REDIS_URL"]["value"]
    assert url == "redis://rel-tandem-redis:6379/0"


def test_vllm_api_key_comes_from_its_secret_to_both_sides(all_on: Rendered) -> None:
    secret = {"name": "vllm-api-key", "key": "api-key"}
    vllm = pod_spec(all_on.one("Deployment", "vllm"))["containers"][0]
    assert env_of(vllm)["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == secret
    gateway = env_of(all_on.gateway_container())
    assert gateway["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == secret


def test_only_the_gateway_reaches_redis_and_vllm(all_on: Rendered, default: Rendered) -> None:
    gateway_labels = all_on.gateway()["spec"]["template"]["metadata"]["labels"].items()
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in all_on.all("NetworkPolicy")
    }
    assert sorted(policies) == ["redis", "vllm"]
    for component, port in (("redis", 6379), ("vllm", 8000)):
        spec = policies[component]["spec"]
        target = all_on.one("Deployment", component)["spec"]["template"]["metadata"]["labels"]
        assert spec["podSelector"]["matchLabels"].items() <= target.items()
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        (source,) = rule["from"]
        assert source["podSelector"]["matchLabels"].items() <= gateway_labels
        assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    assert default.all("NetworkPolicy") == []  # nothing bundled, nothing to fence


def test_network_policies_can_be_switched_off(render: Render) -> None:
    rendered = render(ALL_ON_VALUES, **{"networkPolicy.enabled": False})
    assert rendered.all("NetworkPolicy") == []


def test_vllm_requests_gpus_and_has_its_own_probes(all_on: Rendered) -> None:
    tensor_parallel = load_yaml(ALL_ON_VALUES)["vllm"]["tensorParallelSize"]
    vllm = all_on.one("Deployment", "vllm")
    assert vllm["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(vllm)
    (container,) = spec["containers"]
    for bound in ("requests", "limits"):
        assert container["resources"][bound]["nvidia.com/gpu"] == tensor_parallel
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(tensor_parallel)
    assert "--enable-prefix-caching" in args
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1200
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert env_of(container)["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    shm = [v for v in spec["volumes"] if v["name"] == "shm"]
    assert shm[0]["emptyDir"]["medium"] == "Memory"
    service = all_on.one("Service", "vllm")
    assert (
        service["spec"]["selector"].items()
        <= vllm["spec"]["template"]["metadata"]["labels"].items()
    )


def dockerfile_user() -> int:
    users = re.findall(r"^USER\s+(\d+)", (CHART.parents[1] / "Dockerfile").read_text(), re.M)
    assert users, "the Dockerfile sets no numeric USER"
    return int(users[-1].split(":")[0])


@pytest.mark.parametrize("name", ["default", "all_on"])
def test_security_context_non_root_with_read_only_root(
    name: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(name)
    for deployment in deployments(rendered):
        spec = pod_spec(deployment)
        assert spec["automountServiceAccountToken"] is False
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            if component == "vllm":  # the vLLM image runs as root; GPUs need no more than that
                continue
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert context["readOnlyRootFilesystem"] is True
    gateway = pod_spec(rendered.gateway())
    # The chart's uid is the image's, so that the cache volume is writable for it.
    assert gateway["securityContext"]["runAsUser"] == dockerfile_user() != 0
    container = rendered.gateway_container()
    env = env_of(container)
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {env["TANDEM_HOME"]["value"], "/tmp"} <= writable


def test_termination_grace_outlasts_the_drain(default: Rendered, render: Render) -> None:
    spec = pod_spec(default.gateway())
    container = default.gateway_container()
    grace = float(env_of(container)["TANDEM_SHUTDOWN_GRACE_SECONDS"]["value"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > grace + pre_stop
    longer = render(NO_KEYS_VALUES, **{"config.shutdownGraceSeconds": 120})
    assert pod_spec(longer.gateway())["terminationGracePeriodSeconds"] > 120 + pre_stop


def test_too_short_termination_grace_is_refused(helm: str) -> None:
    result = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        *("--values", str(NO_KEYS_VALUES), "--set", "terminationGracePeriodSeconds=20"),
    )
    assert result.returncode != 0
    assert "must be larger than" in result.stderr


def test_hpa_scales_the_gateway_on_cpu(all_on: Rendered) -> None:
    hpa = all_on.one("HorizontalPodAutoscaler")
    deployment = all_on.gateway()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilisation is measured against requests; the HPA owns the replica count.
    assert "cpu" in all_on.gateway_container()["resources"]["requests"]
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("name", ["default", "all_on"])
def test_selectors_match_the_gateway_pods(name: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(name)
    labels = rendered.gateway()["spec"]["template"]["metadata"]["labels"].items()
    assert rendered.one("Service", "gateway")["spec"]["selector"].items() <= labels
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels
    assert rendered.gateway()["spec"]["selector"]["matchLabels"].items() <= labels


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCount=two", "replicaCount"),
        ("replicaCont=2", "replicaCont"),
        ("image.variant=gpu", "variant"),
        ("catalog.models.x.policy=direct", "backends"),
        ("config.catalogPath=catalog.yaml", "catalogPath"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, setting: str, message: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["redis.bundled.enabled=true", "redis.external.secretName=r"], "not both"),
        (["config.metricsRequireAuth=true", "serviceMonitor.enabled=true"], "authorization"),
    ],
    ids=["two-redis", "scrape-without-key"],
)
def test_contradictory_values_are_refused(helm: str, settings: list[str], message: str) -> None:
    args = ["template", RELEASE, str(CHART)]
    for setting in settings:
        args += ["--set", setting]
    result = run_helm(helm, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_scrape_key_reaches_the_service_monitor(render: Render) -> None:
    rendered = render(
        NO_KEYS_VALUES,
        **{
            "config.metricsRequireAuth": True,
            "serviceMonitor.enabled": True,
            "serviceMonitor.authorization.secretName": "scrape-key",
            "serviceMonitor.authorization.secretKey": "key",
        },
    )
    (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "scrape-key", "key": "key"},
    }
    env = env_of(rendered.gateway_container())
    assert env["TANDEM_METRICS_REQUIRE_AUTH"]["value"] == "true"


@pytest.mark.parametrize(
    ("values", "key_hint"),
    [((NO_KEYS_VALUES,), '"unused"'), ((ALL_ON_VALUES,), '"<one of your API keys>"')],
    ids=["open", "with-keys"],
)
def test_notes_show_the_openai_sdk_base_url(
    helm: str, values: tuple[Path, ...], key_hint: str
) -> None:
    args = ["install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "llm"]
    for path in values:
        args += ["--values", str(path)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"http://{FULLNAME}.llm.svc.cluster.local:8000/v1" in notes
    assert f"port-forward service/{FULLNAME} 8000:8000" in notes
    assert f'OpenAI(base_url="http://127.0.0.1:8000/v1", api_key={key_hint})' in notes
    assert 'model="echo"' in notes


def pod_filesystem(rendered: Rendered, root: Path) -> dict[str, Path]:
    """Lay out the gateway pod's volumes under `root`; returns mountPath -> local folder."""
    volumes = {v["name"]: v for v in pod_spec(rendered.gateway())["volumes"]}
    configmaps = {d["metadata"]["name"]: d["data"] for d in rendered.all("ConfigMap")}
    secrets = {d["metadata"]["name"]: d["data"] for d in rendered.all("Secret")}
    mounts = {}
    for mount in rendered.gateway_container()["volumeMounts"]:
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = configmaps[volume["configMap"]["name"]]
            for item in volume["configMap"]["items"]:
                (folder / item["path"]).write_text(data[item["key"]])
        elif "secret" in volume:
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                (folder / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
        else:
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume
        mounts[mount["mountPath"]] = folder
    return mounts


def test_the_pod_environment_starts_a_ready_gateway(render: Render, tmp_path: Path) -> None:
    """`tandem serve` with the rendered container's env, volumes and key Secret really serves."""
    key = "sk-pod-test-key"
    rendered = render(**{"apiKeys.values[0]": key})
    container = rendered.gateway_container()
    mounts = pod_filesystem(rendered, tmp_path / "pod")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for var in container["env"]:
        value = var["value"]
        for mount_path, folder in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(f"{mount_path}/"):
                value = str(folder) + value[len(mount_path) :]
                break
        env[var["name"]] = value
    port = closed_port()
    env |= {"TANDEM_HOST": "127.0.0.1", "TANDEM_PORT": str(port)}
    assert container["args"] == ["serve"]
    process = subprocess.Popen(
        [venv_tool("tandem"), *container["args"]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    log = ""
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.communicate()[1]
                try:
                    if client.get(container["livenessProbe"]["httpGet"]["path"]).is_success:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not come up in 60 s"
                time.sleep(0.2)
            assert client.get(container["readinessProbe"]["httpGet"]["path"]).status_code == 200
            assert client.get("/v1/models").status_code == 401
            models = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert models.status_code == 200
            assert [m["id"] for m in models.json()["data"]] == ["echo"]
            assert "tandem_requests_total" in client.get("/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        grace = pod_spec(rendered.gateway())["terminationGracePeriodSeconds"]
        try:
            log = process.communicate(timeout=grace)[1]
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    # Uvicorn drains, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log

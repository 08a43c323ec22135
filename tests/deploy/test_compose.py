"""deploy/compose.yaml: valid by the Compose specification, and the setup it describes.

No Docker engine runs on the test machines, so nothing here starts a container. The schema is
the Compose specification's own JSON schema, as vendored by check-jsonschema (dev extra).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import pytest

from gateway.server.cli import main as tandem_main
from tests.deploy.conftest import COMPOSE, DEPLOY, DOCKERFILE, ROOT, load_yaml

VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\})")


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `$$`, with `env` as the environment.

    Every variable must have a default, so that the file works with no `.env` at all.
    """
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        assert default is not None or name in env, f"${{{name}}} has no default"
        return env.get(name) or default or ""

    return VARIABLE.sub(substitute, node)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = interpolate(raw, {})
    return data


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    spec = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(spec.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_file_follows_the_compose_specification(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    assert errors(validator, compose) == []


def test_every_variable_can_be_set_from_the_environment(
    validator: jsonschema.protocols.Validator, raw: dict[str, Any]
) -> None:
    env = {"VLLM_MODEL": "meta-llama/Llama-3.1-70B-Instruct", "VLLM_TENSOR_PARALLEL_SIZE": "4"}
    compose = interpolate(raw, env)
    assert errors(validator, compose) == []
    vllm = compose["services"]["vllm"]
    assert vllm["command"][0] == env["VLLM_MODEL"]
    assert vllm["command"][vllm["command"].index("--tensor-parallel-size") + 1] == "4"
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "4"


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["redis"].update(healthcheck={"test": ["CMD"], "intervall": "1s"}),
        lambda c: c["services"]["tandem"].update(depends_on={"redis": {"condition": "healthy"}}),
        lambda c: c["services"]["vllm"].update(profiles="gpu"),
    ],
    ids=["misspelt-key", "bad-condition", "profiles-not-a-list"],
)
def test_schema_rejects_a_broken_file(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any], breakage: Any
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert errors(validator, broken) != []


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    profiles = {name: svc.get("profiles", []) for name, svc in compose["services"].items()}
    assert profiles == {
        "tandem": ["gpu"],
        "tandem-cpu": ["cpu"],
        "tandem-collab": ["collab"],
        "redis": [],
        "vllm": ["gpu"],
        "vllm-cpu": ["collab"],
        "prometheus": ["metrics"],
    }


TANDEMS = ("tandem", "tandem-cpu", "tandem-collab")


@pytest.mark.parametrize(
    "active",
    [{"cpu"}, {"gpu"}, {"collab"}, {"cpu", "metrics"}, {"gpu", "metrics"}, {"collab", "metrics"}],
)
def test_each_profile_starts_a_complete_setup(compose: dict[str, Any], active: set[str]) -> None:
    services = compose["services"]
    running = {
        name
        for name, svc in services.items()
        if not svc.get("profiles") or active & {*svc["profiles"]}
    }
    # Exactly one Tandem, with everything it depends on running too.
    tandems = running & set(TANDEMS)
    assert len(tandems) == 1
    for name in running:
        assert set(services[name].get("depends_on", {})) <= running
    if "metrics" in active:
        assert "prometheus" in running


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in TANDEMS:
        depends = services[name]["depends_on"]
        assert "redis" in depends
        for dependency, condition in depends.items():
            assert condition == {"condition": "service_healthy"}, name
            assert services[dependency]["healthcheck"]["test"][0] == "CMD"
    assert "vllm" in services["tandem"]["depends_on"]
    assert "vllm-cpu" in services["tandem-collab"]["depends_on"]


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in TANDEMS:
        check = services[name]["healthcheck"]
        assert any("/healthz" in part for part in check["test"])
        # Local models are prepared at first start: give that time before failures count.
        assert seconds(check["start_period"]) >= 300
    for name in ("vllm", "vllm-cpu"):
        assert any("/health" in part for part in services[name]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert all("healthcheck" in svc for svc in services.values())


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_vllm_reserves_gpus_and_takes_its_model_from_the_environment(
    raw: dict[str, Any],
) -> None:
    vllm = raw["services"]["vllm"]
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert device["count"] == "${VLLM_TENSOR_PARALLEL_SIZE:-1}"
    assert vllm["command"][0].startswith("${VLLM_MODEL:-")
    served = vllm["command"][vllm["command"].index("--served-model-name") + 1]
    catalog = load_yaml(DEPLOY / "catalogs" / "gpu.yaml")
    (backend,) = catalog["backends"].values()
    assert backend["model"] == served
    assert backend["base_url"] == "http://vllm:8000/v1"


def test_named_volumes_hold_the_model_caches(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    home = compose["services"]["tandem"]["environment"]["TANDEM_HOME"]
    for name in TANDEMS:
        assert f"tandem-models:{home}" in compose["services"][name]["volumes"]
    for name in ("vllm", "vllm-cpu"):
        assert any(v.startswith("vllm-cache:") for v in compose["services"][name]["volumes"])


@pytest.mark.usefixtures("clean_env")
def test_mounted_files_exist_and_the_catalog_is_where_tandem_config_points(
    compose: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).is_file(), source
    expected = {
        "tandem": "catalog ok: large",
        "tandem-collab": "catalog ok: large, small, tandem-collab, tandem-hawkeye",
    }
    for name, aliases in expected.items():
        tandem = compose["services"][name]
        config = tandem["environment"]["TANDEM_CONFIG"]
        (catalog,) = [v for v in tandem["volumes"] if v.split(":")[1] == config]
        assert catalog.endswith(":ro")
        path = COMPOSE.parent / catalog.split(":")[0]
        assert tandem_main(["check", "--config", str(path)]) == 0
        assert capsys.readouterr().out.strip() == aliases


def test_collab_reaches_the_vllm_cpu_server_it_waits_for(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm-cpu"]
    served = vllm["command"][vllm["command"].index("--served-model-name") + 1]
    catalog = load_yaml(DEPLOY / "catalogs" / "collab.yaml")
    large = catalog["backends"]["large"]
    assert large["model"] == served
    assert large["base_url"] == "http://vllm-cpu:8000/v1"
    # a token session asks for 20 log-probs (entropy_logprobs): the server must allow them
    assert int(vllm["command"][vllm["command"].index("--max-logprobs") + 1]) >= 20
    assert large["context_length"] == int(
        vllm["command"][vllm["command"].index("--max-model-len") + 1]
    )
    policies = {m["policy"] for m in catalog["models"].values()}
    assert {"collab", "hawkeye"} <= policies
    assert "devices" not in str(vllm.get("deploy", {})), "no GPU needed"


def test_tandem_services_are_hardened_and_drain_on_stop(compose: dict[str, Any]) -> None:
    for name in TANDEMS:
        svc = compose["services"][name]
        assert svc["read_only"] is True
        assert "/tmp" in svc["tmpfs"]
        assert svc["cap_drop"] == ["ALL"]
        grace = float(svc["environment"]["TANDEM_SHUTDOWN_GRACE_SECONDS"])
        assert seconds(svc["stop_grace_period"]) > grace
        assert svc["environment"]["TANDEM_REDIS_URL"] == "redis://redis:6379/0"


def test_images_are_built_from_the_dockerfile_targets(compose: dict[str, Any]) -> None:
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)
    for name, target in (("tandem", "gateway"), ("tandem-cpu", "cpu"), ("tandem-collab", "cpu")):
        build = compose["services"][name]["build"]
        assert build["target"] == target
        assert target in stages
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_prometheus_scrapes_tandem_under_either_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    (mount,) = [v for v in services["prometheus"]["volumes"] if v.startswith("./")]
    config = load_yaml(COMPOSE.parent / mount.split(":")[0])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (target,) = jobs["tandem"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert jobs["tandem"]["metrics_path"] == "/metrics"
    assert port == "8000"
    for name in TANDEMS:
        aliases = services[name].get("networks", {}).get("default", {}).get("aliases", [])
        assert host == name or host in aliases


def test_published_port_is_tandems(compose: dict[str, Any]) -> None:
    for name in TANDEMS:
        (port,) = compose["services"][name]["ports"]
        assert port == "127.0.0.1:8000:8000"
        assert PurePosixPath(compose["services"][name]["environment"]["TANDEM_HOME"]).is_absolute()

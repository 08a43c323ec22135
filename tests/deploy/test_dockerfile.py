"""deploy/Dockerfile: linted, and built the way CI installs Tandem, so the two cannot drift.

No Docker engine runs on the test machines: the checks read the Dockerfile (hadolint and a small
parser) and compare it with what `make install` runs and with the chart and compose settings.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.server.cli import main as tandem_main
from tests.deploy.conftest import CHART, COMPOSE, DOCKERFILE, ROOT, load_yaml, venv_tool

CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages), with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.I)
            assert match, f"every stage is named: FROM {rest}"
            stages.append(Stage(match.group(2), match.group(1), []))
        elif not stages:
            assert keyword == "ARG", keyword
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    args, stages = parse_dockerfile(DOCKERFILE.read_text())
    return args, {stage.name: stage for stage in stages}


@pytest.fixture(scope="module")
def stages(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> dict[str, Stage]:
    return dockerfile[1]


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built on, the stage itself first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def env_of(stages: dict[str, Stage], name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(lineage(stages, name)):
        for args in stage.all("ENV"):
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


# --- lint ---------------------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_router_image_is_clean_and_pins_what_the_chart_and_load_tests_run() -> None:
    router = DOCKERFILE.with_name("Dockerfile.router")
    result = hadolint(router)
    assert result.returncode == 0, result.stdout + result.stderr
    (pinned,) = re.findall(r"vllm-router==([\w.]+)", router.read_text())
    chart = load_yaml(DOCKERFILE.parent / "helm" / "tandem" / "values.yaml")
    assert chart["vllm"]["router"]["image"]["tag"] == pinned
    loadtests = (ROOT / "loadtests" / "requirements.txt").read_text()
    assert f"\nvllm-router=={pinned}\n" in loadtests
    assert "USER 10001:10001" in router.read_text()


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag
    assert "DL3008" in result.stdout  # unpinned apt packages


# --- the install step is CI's -------------------------------------------------------------------


@dataclass(frozen=True)
class PipInstall:
    constraints: tuple[str, ...]
    no_deps: bool
    targets: frozenset[str]


def parse_pip_install(command: str) -> PipInstall:
    """The parts of a `pip install` that decide what gets installed. Installing the project in
    editable mode or not, quietly or not, and from which index torch's build comes, do not."""
    words = shlex.split(command)
    words = words[words.index("install") + 1 :]
    constraints, targets, no_deps = [], [], False
    ignored_flags = {"--quiet", "-q", "--disable-pip-version-check", "-e", "--editable"}
    while words:
        word = words.pop(0)
        if word in {"-c", "--constraint"}:
            constraints.append(words.pop(0))
        elif word == "--no-deps":
            no_deps = True
        elif word == "--extra-index-url":
            words.pop(0)
        elif word in ignored_flags:
            continue
        else:
            assert not word.startswith("-"), f"unexpected pip option {word} in {command!r}"
            targets.append(word)
    return PipInstall(tuple(constraints), no_deps, frozenset(targets))


def ci_install() -> list[PipInstall]:
    """What `make install` (and so CI, through `make test`) runs, as make itself expands it."""
    result = subprocess.run(
        ["make", "-nB", "--no-print-directory", ".venv/.installed"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if " pip install " in line]
    assert lines, result.stdout
    return [parse_pip_install(line) for line in lines]


def image_install(stages: dict[str, Stage], target: str) -> list[PipInstall]:
    installs = []
    for stage in reversed(lineage(stages, target)):
        for run in stage.all("RUN"):
            for command in run.split("&&"):
                if "pip install" in command:
                    installs.append(parse_pip_install(command))
    return installs


def built_from(stages: dict[str, Stage], target: str) -> str:
    """The build stage whose /opt/venv the target copies."""
    copies = [c for s in lineage(stages, target) for c in s.all("COPY") if "--from=" in c]
    (copy,) = copies
    source = re.search(r"--from=(\S+)", copy)
    assert source
    assert copy.split()[-2:] == ["/opt/venv", "/opt/venv"]
    return source.group(1)


def without_extras(install: PipInstall) -> PipInstall:
    targets = frozenset(re.sub(r"\[.*\]$", "", target) for target in install.targets)
    return PipInstall(install.constraints, install.no_deps, targets)


def test_cpu_image_installs_exactly_what_ci_installs(stages: dict[str, Stage]) -> None:
    assert image_install(stages, built_from(stages, "cpu")) == ci_install()


def test_gateway_image_installs_ci_project_step_without_extras(stages: dict[str, Stage]) -> None:
    project_step = ci_install()[0]
    assert "." in {re.sub(r"\[.*\]$", "", target) for target in project_step.targets}
    assert image_install(stages, built_from(stages, "gateway")) == [without_extras(project_step)]


def test_the_image_copies_the_constraints_file_pip_reads(stages: dict[str, Stage]) -> None:
    constraints = {c for step in ci_install() for c in step.constraints}
    assert constraints == {"requirements/constraints.txt"}
    (constraint,) = constraints
    build = stages["build-base"]
    assert f"{constraint} {constraint}" in build.all("COPY")
    (workdir,) = build.all("WORKDIR")
    assert PurePosixPath(workdir).is_absolute()


def test_no_pip_install_in_the_runtime_images(stages: dict[str, Stage]) -> None:
    for target in ("gateway", "cpu"):
        for stage in lineage(stages, target):
            assert not any("pip" in run for run in stage.all("RUN")), stage.name


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints pin exact versions: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_everything_the_cpu_image_asks_for_is_pinned(stages: dict[str, Stage]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraint_pins()
    for step in image_install(stages, built_from(stages, "cpu")):
        for target in step.targets:
            if target.startswith("."):
                extras = re.findall(r"[\w-]+", target.partition("[")[2])
                assert set(extras) <= set(project["optional-dependencies"]), extras
                wanted = [*project["dependencies"]]
                for extra in extras:
                    wanted += project["optional-dependencies"][extra]
                for spec in wanted:
                    name = canonicalize_name(Requirement(spec).name)
                    assert name in pins, f"{name} is not pinned in {CONSTRAINTS.name}"
            else:
                requirement = Requirement(target)
                assert pins[canonicalize_name(requirement.name)] in requirement.specifier


# --- shape of the image -------------------------------------------------------------------------


def test_two_targets_on_a_slim_python_of_the_supported_version(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    args, stages = dockerfile
    assert list(stages)[-1] == "gateway", "a plain `docker build` makes the lean image"
    for target in ("gateway", "cpu"):
        assert lineage(stages, target)[-1].base == "${PYTHON_IMAGE}"
        assert lineage(stages, target)[1].name == "runtime"
    image = args["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", image)
    assert match, image
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={match.group(1)}.{match.group(2)}"


def test_runs_as_a_fixed_non_root_user(stages: dict[str, Stage]) -> None:
    for target in ("gateway", "cpu"):
        users = [u for s in reversed(lineage(stages, target)) for u in s.all("USER")]
        assert users, target
        uid, _, gid = users[-1].partition(":")
        assert int(uid) > 0
        assert int(gid) > 0
        assert load_yaml(CHART / "values.yaml")["podSecurityContext"]["runAsUser"] == int(uid)


def test_settings_agree_with_the_chart_and_compose(stages: dict[str, Stage]) -> None:
    env = env_of(stages, "gateway")
    assert env["TANDEM_HOST"] == "0.0.0.0"
    values = load_yaml(CHART / "values.yaml")
    assert env["TANDEM_CONFIG"] == values["config"]["catalogPath"]
    assert env["TANDEM_HOME"] == values["config"]["home"]
    compose = load_yaml(COMPOSE)["x-tandem"]
    compose_env = compose["environment"]
    # Home is where the read-only root filesystem stays writable in compose and in the chart.
    assert env["HOME"] == "/tmp"
    assert env["HOME"] in compose["tmpfs"]
    assert compose["read_only"] is True
    assert compose_env["TANDEM_CONFIG"] == env["TANDEM_CONFIG"]
    assert compose_env["TANDEM_HOME"] == env["TANDEM_HOME"]
    assert stages["runtime"].all("EXPOSE") == [env["TANDEM_PORT"]]
    assert stages["runtime"].all("ENTRYPOINT") == ['["tandem"]']
    assert stages["runtime"].all("CMD") == ['["serve"]']


def test_model_cache_is_a_volume(stages: dict[str, Stage]) -> None:
    env = env_of(stages, "cpu")
    (volume,) = stages["runtime"].all("VOLUME")
    assert volume == f'["{env["TANDEM_HOME"]}"]'
    assert env["HF_HOME"].startswith(env["TANDEM_HOME"] + "/")


@pytest.mark.usefixtures("clean_env")
def test_each_target_ships_a_catalog_at_tandem_config(
    stages: dict[str, Stage], capsys: pytest.CaptureFixture[str]
) -> None:
    config = env_of(stages, "gateway")["TANDEM_CONFIG"]
    sources = {}
    for target in ("gateway", "cpu"):
        copies = [c.split() for c in stages[target].all("COPY") if c.endswith(f" {config}")]
        ((source, _),) = copies
        sources[target] = source
    assert sources["cpu"] == "gateway/default_catalog.yaml"
    # The lean image has no local runtimes: its own catalog must not need them.
    assert tandem_main(["check", "--config", str(ROOT / sources["gateway"])]) == 0
    assert capsys.readouterr().out.strip() == "catalog ok: echo"


def test_dockerignore_admits_what_the_dockerfile_copies(stages: dict[str, Stage]) -> None:
    ignore = Path(f"{DOCKERFILE}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = [
        source
        for stage in stages.values()
        for copy in stage.all("COPY")
        if "--from=" not in copy
        for source in copy.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(f"{a}/") for a in allowed), source


# --- the health check ---------------------------------------------------------------------------


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[Health]]]:
    handler = type("Handler", (Health,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_healthcheck_command_probes_healthz_on_tandem_port(
    stages: dict[str, Stage], health_server: tuple[int, type[Health]]
) -> None:
    """Run the HEALTHCHECK's own command against a stand-in server on TANDEM_PORT."""
    (healthcheck,) = stages["runtime"].all("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--start-period=300s" in options.split()
    argv = json.loads(command)
    assert argv[0] == "python"
    port, handler = health_server

    def run() -> int:
        env = {"TANDEM_PORT": str(port), "PATH": ""}
        return subprocess.run(
            [sys.executable, *argv[1:]], env=env, timeout=30, check=False, capture_output=True
        ).returncode

    assert run() == 0
    handler.status = 503
    assert run() != 0


def test_the_cpu_image_copies_the_routers_its_catalog_names(stages: dict[str, Stage]) -> None:
    """A catalog names a router by a path from its own folder: each must land beside it."""
    catalog = load_yaml(ROOT / "gateway/default_catalog.yaml")
    config = env_of(stages, "gateway")["TANDEM_CONFIG"]
    copies = {c.split()[-1]: c.split()[-2] for c in stages["cpu"].all("COPY")}
    assert catalog["routers"]
    for path in catalog["routers"].values():
        folder = Path(path).parent
        landed = str(Path(config).parent / folder)
        assert copies.get(landed) == f"gateway/{folder}", f"{path} is not copied to {landed}"

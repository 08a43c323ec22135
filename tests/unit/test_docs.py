"""The docs stay true: README.md and docs/*.md name only what exists.

Commands and names live in code: the text of `code spans` (CODE_SPAN) and of fenced blocks
(FENCE). Each check reads a doc with one pattern and asks the code (tests/unit/docs_facts.py):

- paths (PATH, in code): a word starting with a top-level folder of the repository (`gateway/`,
  `tests/`, `docs/`, ...) or with a subpackage of `gateway/` (`api/hot.py` means
  `gateway/api/hot.py`), up to a character that cannot be in a path (so `policies/<name>.py`
  reads `policies/`); it exists, or as a glob (`*`) it matches something;
- links (LINK, anywhere): a `[text](target)` without a scheme names a file relative to the doc,
  and its `#anchor` a heading of that file (GitHub's slugs, SLUG_DROP);
- commands (in code): `make X` (MAKE) a Makefile target, `tandem X` (TANDEM) a subcommand of
  the `tandem` parser, `python -m X` (PYTHON_M) an importable module, `python X.py`
  (PYTHON_FILE) a file;
- variables (VARIABLE, anywhere): `TANDEM_<FIELD>` of `Settings`, a catalog override
  (`TANDEM_BACKENDS__...`, `TANDEM_MODELS__...`), or one of docs_facts.OTHER_VARIABLES;
- settings tables (a table whose first header cell is `variable`): every `TANDEM_*` of the first
  column is a `Settings` field (or a catalog override);
- catalogs: a ```yaml block with `backends:` or `models:` at the top is validated as Tandem
  validates a catalog: shape, each backend against its kind, each alias's policy parameters;
- parameter tables (first header cell starting with `parameter`): every backticked name of the
  first column is a parameter of the policy the doc describes (PARAMETER_DOCS);
- metrics (METRIC, anywhere): a `tandem_*` name is a series the metrics export (a counter's
  `_total`, a histogram's name and its `_bucket`, `_sum`, `_count`, a gauge's name);
- README.md has at most README_LINES lines and links every docs/*.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.unit import docs_facts as facts

ROOT = facts.ROOT
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LINES = 200
PARAMETER_DOCS = {"collaboration.md": "collab", "hawkeye.md": "hawkeye"}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`]+)`")
TOP = "gateway|tests|loadtests|benchmarks|deploy|examples|scripts|docs|requirements"
SUBPACKAGE = "api|policies|backends|core|stores|observability|chat|models|server|playground"
PATH = re.compile(rf"(?<![\w./~$-])((?:{TOP}|{SUBPACKAGE})/[\w./*-]*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
SLUG_DROP = re.compile(r"[^\w\- ]")
MAKE = re.compile(r"(?<![\w-])make ([a-z][\w-]*)")
TANDEM = re.compile(r"(?<![\w-])tandem ([a-z][\w-]*)")
PYTHON_M = re.compile(r"python3? -m ([\w.]+)")
PYTHON_FILE = re.compile(r"python3? ([\w./-]+\.py)\b")
VARIABLE = re.compile(r"\bTANDEM_[A-Z0-9_]+")
METRIC = re.compile(r"\btandem_[a-z_]*[a-z]")
TABLE = re.compile(r"^(\|.*\|)\n\|[-| :]+\|\n((?:\|.*\|\n?)*)", re.M)
NAME = re.compile(r"`([\w.]+)`")


def code_of(text: str) -> str:
    """The text of fenced blocks and code spans, one piece per line."""
    blocks = [body for _, body in FENCE.findall(text)]
    spans = CODE_SPAN.findall(FENCE.sub("", text))
    return "\n".join(blocks + spans)


def tables(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each table's first header cell and the first cell of each row."""
    for header, body in TABLE.findall(FENCE.sub("", text)):
        rows = [row.split("|")[1] for row in body.splitlines() if row.strip()]
        yield header.split("|")[1].strip(), rows


def slug(heading: str) -> str:
    return SLUG_DROP.sub("", heading.strip().lower()).replace(" ", "-")


def path_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for word in PATH.findall(code_of(text)):
        word = word.rstrip(".,:;")
        if word.split("/")[0] in SUBPACKAGE.split("|"):
            word = f"gateway/{word}"
        if not (list(ROOT.glob(word)) if "*" in word else (ROOT / word).exists()):
            problems.append(f"no such path: {word}")
    return problems


def link_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        where = (doc.parent / name) if name else doc
        if not where.exists():
            problems.append(f"broken link: {target}")
        elif anchor and where.suffix == ".md":
            headings = HEADING.findall(FENCE.sub("", where.read_text()))
            if anchor not in {slug(h) for h in headings}:
                problems.append(f"no heading for the anchor: {target}")
    return problems


def command_problems(text: str, doc: Path) -> list[str]:
    code = code_of(text)
    return (
        [f"no make target: {t}" for t in MAKE.findall(code) if t not in facts.make_targets()]
        + [
            f"no tandem command: {c}"
            for c in TANDEM.findall(code)
            if not facts.is_tandem_command(c)
        ]
        + [f"no module: {m}" for m in PYTHON_M.findall(code) if not facts.is_module(m)]
        + [f"no file: {f}" for f in PYTHON_FILE.findall(code) if not (ROOT / f).is_file()]
    )


def variable_problems(text: str, doc: Path) -> list[str]:
    return [f"no such variable: {v}" for v in VARIABLE.findall(text) if not facts.is_variable(v)]


def settings_table_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for header, cells in tables(text):
        if header != "variable":
            continue
        for name in (name for cell in cells for name in VARIABLE.findall(cell)):
            if not (facts.is_setting(name) or name.startswith(facts.OVERRIDE_PREFIXES)):
                problems.append(f"not a setting: {name}")
    return problems


def catalog_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for info, body in FENCE.findall(text):
        data = yaml.safe_load(body) if info == "yaml" else None
        if isinstance(data, dict) and {"backends", "models"} & set(data):
            problems += facts.catalog_problems(data)
    return problems


def parameter_table_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for header, cells in tables(text):
        if not header.startswith("parameter"):
            continue
        if doc.name not in PARAMETER_DOCS:
            problems.append(f"a parameter table in a doc of no policy: {doc.name}")
            continue
        known = facts.policy_params(PARAMETER_DOCS[doc.name])
        names = (name for cell in cells for name in NAME.findall(cell))
        problems += [f"not a parameter: {name}" for name in names if name not in known]
    return problems


def metric_problems(text: str, doc: Path) -> list[str]:
    return [f"not a metric: {m}" for m in METRIC.findall(text) if m not in facts.metric_names()]


def readme_problems(text: str, doc: Path) -> list[str]:
    lines = len(text.splitlines())
    problems = [f"{lines} lines, more than {README_LINES}"] if lines > README_LINES else []
    linked = set(LINK.findall(text))
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    return problems + [f"no link to docs/{name}" for name in docs if f"docs/{name}" not in linked]


CHECKS: list[Callable[[str, Path], list[str]]] = [
    path_problems,
    link_problems,
    command_problems,
    variable_problems,
    settings_table_problems,
    catalog_problems,
    parameter_table_problems,
    metric_problems,
]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_docs_name_only_what_exists(doc: Path, check: Callable[[str, Path], list[str]]) -> None:
    assert check(doc.read_text(), doc) == []


def test_the_readme_is_a_front_page_that_links_every_doc() -> None:
    assert readme_problems(README.read_text(), README) == []


def test_every_policy_doc_has_its_parameter_table() -> None:
    for name in PARAMETER_DOCS:
        headers = [header for header, _ in tables((ROOT / "docs" / name).read_text())]
        assert any(header.startswith("parameter") for header in headers), name


COLLAB_DOC = ROOT / "docs" / "collaboration.md"


def table(head: str, cell: str) -> str:
    return f"| {head} | meaning |\n|---|---|\n| {cell} | x |\n"


def catalog(body: str) -> str:
    return f"```yaml\n{body}\n```\n"


def alias(policy: str, more: str) -> str:
    return catalog(f"models: {{m: {{policy: {policy}, {more}}}}}")


# each case: a check, a text it accepts, the same text with one name wrong
WRONG_NAMES = [
    (path_problems, "`gateway/api/hot.py`", "`gateway/api/cold.py`"),
    (path_problems, "`api/hot.py`", "`api/cold.py`"),
    (path_problems, "`tests/policies/test_collab_*.py`", "`tests/policies/test_nope_*.py`"),
    (path_problems, "```\ncat examples/collab-vllm.yaml\n```", "```\ncat examples/x.yaml\n```"),
    (link_problems, "[c](catalog.md)", "[c](catalogue.md)"),
    (link_problems, "[s](catalog.md#settings)", "[s](catalog.md#setting)"),
    (link_problems, "[p](../README.md#tests)", "[p](../README.md#testing)"),
    (command_problems, "`make loadtest-goals`", "`make loadtests`"),
    (command_problems, "`.venv/bin/tandem check --config F`", "`.venv/bin/tandem validate`"),
    (command_problems, "`python -m benchmarks.relay_cpu`", "`python -m benchmarks.relay`"),
    (command_problems, "`python benchmarks/ttft.py`", "`python benchmarks/ttfb.py`"),
    (variable_problems, "`TANDEM_REDIS_URL`", "`TANDEM_REDIS_ADDRESS`"),
    (variable_problems, "`TANDEM_MODELS__X__PARAMS`", "`TANDEM_MODEL__X__PARAMS`"),
    (variable_problems, "`TANDEM_LIMITS__MAX_N`", "`TANDEM_LIMITS__MAX_M`"),
    (variable_problems, "`TANDEM_LIMITS__MAX_N`", "`TANDEM_PORT__MAX_N`"),
    (
        settings_table_problems,
        table("variable", "`TANDEM_CONFIG`"),
        table("variable", "`TANDEM_HOME`"),
    ),
    (
        catalog_problems,
        catalog("backends: {e: {kind: echo, delay: 1}}"),
        catalog("backends: {e: {kind: echo, pause: 1}}"),
    ),
    (
        catalog_problems,
        catalog("backends: {e: {kind: echo}}"),
        catalog("backends: {e: {kind: parrot}}"),
    ),
    (
        catalog_problems,
        alias("direct", "backends: {main: e}"),
        alias("direct", "backend: {main: e}"),
    ),
    (
        catalog_problems,
        alias("collab", "backends: {s: e}, params: {span: 4}"),
        alias("collab", "backends: {s: e}, params: {spam: 4}"),
    ),
    (catalog_problems, alias("hawkeye", "backends: {p: e}"), alias("hawk", "backends: {p: e}")),
    (
        catalog_problems,
        catalog("backends: {e: {kind: echo}}\nmodels: {m: {policy: direct, backends: {main: e}}}"),
        catalog("backends: {e: {kind: echo}}\nmodels: {m: {policy: direct, backends: {main: f}}}"),
    ),
    (parameter_table_problems, table("parameter", "`span_stop`"), table("parameter", "`span_end`")),
    (metric_problems, "`tandem_requests_total`", "`tandem_requests`"),
    (metric_problems, "tandem_request_duration_seconds_bucket", "tandem_request_seconds"),
    (metric_problems, "`tandem_redis_up`", "`tandem_redis_up_total`"),
]


@pytest.mark.parametrize(("check", "good", "bad"), WRONG_NAMES)
def test_each_check_refuses_a_wrong_name(
    check: Callable[[str, Path], list[str]], good: str, bad: str
) -> None:
    assert check(good, COLLAB_DOC) == []
    assert check(bad, COLLAB_DOC) != []


def test_a_parameter_table_belongs_to_a_policy_doc() -> None:
    parameters = table("parameter", "`span`")
    assert parameter_table_problems(parameters, COLLAB_DOC) == []
    assert parameter_table_problems(parameters, ROOT / "docs" / "catalog.md") != []


def test_the_readme_check_refuses_a_long_page_or_a_missing_link() -> None:
    text = README.read_text()
    assert readme_problems(text, README) == []
    assert readme_problems(text + "\n" * README_LINES, README) != []
    assert readme_problems(text.replace("(docs/api.md)", "(docs/API.md)"), README) != []

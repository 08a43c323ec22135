"""`tandem chat` as a person runs it: in a pseudo-terminal (pexpect) and through pipes, against
Tandem on loopback; its output is compared with what the openai SDK gets for the same request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pexpect
import pytest
from openai import OpenAI

from loadtests.fake_upstream import FakeConfig, FakeUpstream, ServerThread
from tests.e2e.conftest import MIXED, QUESTION
from tests.servers import (
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    Upstream,
    catalog_for,
    closed_port,
    serve_gateway,
    write_catalog,
)

PROMPT = "you> "
TIMEOUT = 45
ALIASES = "down, echo, flaky, hawkeye, pair, relay, slow"  # as /v1/models lists them
SGR = re.compile(r"\x1b\[([0-9;]*)m")
OTHER_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]")  # readline's bracketed-paste switches


def environment() -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TANDEM_URL", "TANDEM_API_KEY", "OPENAI_API_KEY"):
        env.pop(name, None)
    return env


@contextmanager
def chat(*args: str) -> Iterator[pexpect.spawn]:
    """`tandem chat ARGS` in a pseudo-terminal that does not echo what the test types."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gateway", "chat", *args],
        env=environment(),
        encoding="utf-8",
        timeout=TIMEOUT,
        echo=False,
        dimensions=(50, 200),
    )
    try:
        yield child
    finally:
        child.close(force=True)


def ask(child: pexpect.spawn, line: str) -> str:
    """Type one line; what the chat printed until its next prompt, with `\\n` line ends."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return str(child.before).replace("\r\n", "\n")


def quit_chat(child: pexpect.spawn) -> int:
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus)


def run_chat(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`tandem chat ARGS` with stdin and stdout as pipes."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**environment(), **(env or {})},
    )


class Streamed(NamedTuple):
    content: str
    pieces: list[tuple[str, str]]  # (source, content)
    report: dict[str, Any]
    reasoning: str


def sdk_stream(url: str, model: str, messages: list[dict[str, str]], **tandem: Any) -> Streamed:
    """What the openai SDK gets for the request a chat makes."""
    with OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]  # plain dicts, as a chat sends them
            stream=True,
            stream_options={"include_usage": True},
            temperature=0,
            max_tokens=tandem.pop("max_tokens", 128),
            extra_body={"tandem": {"provenance": True, **tandem}},
        )
        pieces: list[tuple[str, str]] = []
        report: dict[str, Any] = {}
        reasoning = ""
        for chunk in stream:
            if chunk.choices:
                delta = chunk.choices[0].delta
                reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
                if delta.content:
                    source = (chunk.choices[0].model_extra or {})["tandem"]["source"]
                    pieces.append((source, delta.content))
            report = (chunk.model_extra or {}).get("tandem") or report
    return Streamed("".join(text for _, text in pieces), pieces, report, reasoning)


def parse_stats(text: str) -> dict[str, str]:
    lines = text.replace("\r", "").strip().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def parse_tokens(value: str) -> dict[str, int]:
    pairs = (part.rsplit(" ", 1) for part in value.split(", "))
    return {source: int(n) for source, n in pairs}


def assert_stats_match(stats: dict[str, str], report: dict[str, Any]) -> None:
    assert stats["policy"] == report["policy"]
    assert parse_tokens(stats["tokens"]) == report["tokens"]
    assert float(stats["upload ratio"]) == report["upload_ratio"]
    assert int(stats["interventions"]) == report["interventions"]
    assert stats["degraded"] == ("yes" if report["degraded"] else "no")
    assert re.fullmatch(r"\d+ ms", stats["ttft"])
    assert re.fullmatch(r"[\d.]+ \(\d+ tokens in [\d.]+ s\)", stats["tokens/s"])


@contextmanager
def fake_upstream(config: FakeConfig) -> Iterator[Upstream]:
    fake = FakeUpstream(config)
    with ServerThread(fake.app) as server:
        yield Upstream(fake, server.url)


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[Upstream]:
    """An upstream that writes a word every 0.2 s, for 40 words."""
    with fake_upstream(FakeConfig(itl=0.2, chunks=40)) as slow:
        yield slow


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Upstream,
    slow_upstream: Upstream,
    monkeypatch_session: pytest.MonkeyPatch,
) -> Iterator[str]:
    """Tandem with `echo`, a recording relay, a slow one, a dead one and a flaky one, which
    streams two words and then an in-band error."""
    monkeypatch_session.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    catalog = catalog_for(upstream.url)
    with fake_upstream(FakeConfig(mode="error_in_stream", close_after=2)) as flaky:
        for name, url in (("slow", slow_upstream.url), ("flaky", flaky.url)):
            catalog["backends"][name] = {"kind": "openai", "base_url": f"{url}/v1", "model": "m"}
            catalog["models"][name] = {"policy": "direct", "backends": {"main": name}}
        catalog["models"]["hawkeye"] = {  # echo plans (it repeats the plan prompt) and expands
            "policy": "hawkeye",
            "backends": {"planner": "echo", "expander": "echo"},
            "params": {"plan_max_tokens": 6},
        }
        with serve_gateway(write_catalog(tmp_path_factory.mktemp("chat"), catalog)) as url:
            yield url


def test_no_color_prints_exactly_the_api_content_and_stats_match_the_report(
    gateway: str,
) -> None:
    message = f"hello [bold red]world[/] :smile: tab\there  {uuid.uuid4().hex}"
    with chat("--url", f"{gateway}/v1", "--model", "echo", "--no-color") as child:
        child.expect_exact(PROMPT)
        assert "\x1b" not in str(child.before)
        output = ask(child, message)
        stats = parse_stats(ask(child, "/stats"))
        assert quit_chat(child) == 0
    content, _, report, _ = sdk_stream(gateway, "echo", [{"role": "user", "content": message}])
    assert content == f"You said: {message}"
    assert output == content + "\n"
    assert "\x1b[" not in output
    assert_stats_match(stats, report)
    assert stats["cache"] == "miss"  # a fresh question; the SDK's same request then hit


def test_piped_stdin_and_stdout(gateway: str) -> None:
    lines = "first line\n\nsecond [b]line[/b]\n"
    for flags in (["--no-color"], []):  # a pipe is not a terminal: rich writes no codes either
        result = run_chat("--url", f"{gateway}/v1", "--model", "echo", *flags, stdin=lines)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "You said: first line\nYou said: second [b]line[/b]\n"
        assert result.stderr == ""


#: an answer that, written raw, sets the clipboard, clears the screen, retitles the window,
#: moves the cursor (a one-byte C1 CSI) and backspaces; tabs stay
HOSTILE = "a\x1b]52;c;aGk=\x07b\x1b[2Jc\x1b]0;pwned\x07d\x9b1Ae\x08f\tg"
DEFANGED = "a]52;c;aGk=b[2Jc]0;pwnedd1Aef\tg"


def on_terminal(*args: str, stdin: str) -> str:
    """`tandem chat ARGS` with stdin a pipe and stdout and stderr a pseudo-terminal."""
    leader, follower = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "chat", *args],
            stdin=subprocess.PIPE,
            stdout=follower,
            stderr=follower,
            env=environment(),
        )
        os.close(follower)
        assert process.stdin is not None
        process.stdin.write(stdin.encode())
        process.stdin.close()
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: the process is done
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        os.close(leader)
    return output.decode()


@pytest.mark.parametrize("flags", [["--no-color"], []])
def test_control_characters_never_reach_a_terminal(gateway: str, flags: list[str]) -> None:
    shown = on_terminal("--url", f"{gateway}/v1", "--model", "echo", *flags, stdin=HOSTILE + "\n")
    visible = SGR.sub("", shown).replace("\r\n", "\n")
    assert visible.endswith(f"\nYou said: {DEFANGED}\n" if not flags else "")
    if flags:
        assert visible == f"You said: {DEFANGED}\n"
    for sequence in ("\x1b]", "\x07", "\x1b[2J", "\x9b", "\x08"):
        assert sequence not in shown
    if flags:
        assert "\x1b" not in shown


def test_no_color_to_a_pipe_is_byte_exact_control_characters_included(gateway: str) -> None:
    result = run_chat("--url", f"{gateway}/v1", "--model", "echo", "--no-color", stdin=HOSTILE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"You said: {HOSTILE}\n"


def test_openai_api_key_is_never_sent(tmp_path: Path) -> None:
    catalog = {
        "backends": {"echo": {"kind": "echo"}},
        "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
    }
    with serve_gateway(write_catalog(tmp_path, catalog), api_keys=["sk-openai"]) as url:
        env = {"OPENAI_API_KEY": "sk-openai"}
        result = run_chat("--url", f"{url}/v1", stdin="hi\n", env=env)
        assert result.returncode == 1
        assert "HTTP 401" in result.stderr


def test_the_plan_comes_first_and_to_stderr_when_plain(gateway: str) -> None:
    question = f"what is two plus two {uuid.uuid4().hex}"
    args = ["--url", f"{gateway}/v1", "--model", "hawkeye", "--max-tokens", "8"]
    result = run_chat(*args, "--no-color", stdin=question + "\n")
    expected = sdk_stream(gateway, "hawkeye", [{"role": "user", "content": question}], max_tokens=8)
    assert expected.reasoning
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.content + "\n"
    assert result.stderr == f"plan: {expected.reasoning}\n"
    with chat(*args) as child:
        child.expect_exact(PROMPT)
        shown = OTHER_CSI.sub("", ask(child, question)).replace("\r", "")
        assert quit_chat(child) == 0
    label, plan, small = "1;35", "2;3;35", "36"  # bold magenta; dim italic magenta; cyan
    assert styled_chars(shown) == [
        *((label, c) for c in "plan: "),
        *((plan, c) for c in expected.reasoning),
        ("", "\n"),
        *((small, c) for c in expected.content),
        ("", "\n"),
    ]


def test_alias_and_set_commands(gateway: str) -> None:
    with chat("--url", f"{gateway}/v1", "--model", "echo", "--no-color") as child:
        child.expect_exact(PROMPT)
        listing = ask(child, "/alias").splitlines()
        assert listing == [
            "  down (direct)",
            "* echo (direct)",
            "  flaky (direct)",
            "  hawkeye (hawkeye)",
            "  pair (direct)",
            "  relay (direct)",
            "  slow (direct)",
        ]
        refused = ask(child, "/alias ghost")
        assert f"unknown alias 'ghost'; known: {ALIASES}" in refused
        assert "* echo (direct)" in ask(child, "/alias")
        assert "now talking to slow" in ask(child, "/alias slow")
        assert "* slow (direct)" in ask(child, "/alias")
        assert ask(child, "/set") == "overrides: none\n"
        assert ask(child, "/set threshold=0.8") == "overrides: threshold=0.8\n"
        shown = ask(child, "/set trigger=entropy")
        assert shown == 'overrides: threshold=0.8, trigger="entropy"\n'
        assert "expected KEY=VALUE" in ask(child, "/set nonsense")
        assert ask(child, "/set threshold=") == 'overrides: trigger="entropy"\n'
        assert "/reset" in ask(child, "/help")
        assert "unknown command /frobnicate" in ask(child, "/frobnicate")
        assert ask(child, "") == ""
        assert quit_chat(child) == 0


def test_history_reset_and_failed_turns(gateway: str, upstream: Upstream) -> None:
    """What the upstream receives: the conversation, minus failed turns, empty after /reset."""
    marks = [f"mark-{uuid.uuid4().hex}" for _ in range(4)]

    def roles(mark: str) -> list[str]:
        return [m["role"] for m in upstream.find(mark).body["messages"]]

    words = " ".join(f"w{i}" for i in range(8))
    with chat("--url", f"{gateway}/v1", "--model", "relay", "--no-color") as child:
        child.expect_exact(PROMPT)
        assert ask(child, marks[0]) == words + "\n"
        assert ask(child, marks[1]) == words + "\n"
        assert roles(marks[1]) == ["user", "assistant", "user"]
        ask(child, "/alias down")
        failed = ask(child, "lost in transit")
        assert "tandem chat: HTTP 503 (upstream_unavailable): backend 'down'" in failed
        ask(child, "/alias flaky")
        broken = ask(child, "cut short")
        assert broken.startswith("w0 w1\n")  # what arrived, then the in-band error
        assert "tandem chat: the answer failed" in broken
        ask(child, "/alias relay")
        ask(child, marks[2])
        assert roles(marks[2]) == ["user", "assistant", "user", "assistant", "user"]
        assert "conversation forgotten" in ask(child, "/reset")
        assert ask(child, "/stats") == "no response yet\n"
        ask(child, marks[3])
        assert roles(marks[3]) == ["user"]
        assert quit_chat(child) == 0


def test_ctrl_c_stops_an_answer_and_at_the_prompt_leaves(
    gateway: str, slow_upstream: Upstream
) -> None:
    mark = f"mark-{uuid.uuid4().hex}"
    with chat("--url", f"{gateway}/v1", "--model", "slow", "--no-color") as child:
        child.expect_exact(PROMPT)
        child.sendline(mark)
        child.expect_exact("w0 w1")
        child.sendintr()
        child.expect_exact("(stopped)")
        child.expect_exact(PROMPT)
        record = slow_upstream.find(mark)
        deadline = time.monotonic() + 2
        while not record.disconnected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert record.disconnected, "the stopped answer's stream was not closed"
        assert ask(child, "/stats") == "no response yet\n"  # the partial answer is not kept
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


def test_unreachable_server_and_bad_usage(gateway: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = run_chat("--url", url)
    assert result.returncode == 1
    assert result.stderr == f"tandem chat: cannot reach {url}: is Tandem running? (try --serve)\n"
    result = run_chat("--url", f"{gateway}/v1", "--model", "ghost")
    assert result.returncode == 2
    assert f"unknown model 'ghost'; known: {ALIASES}" in result.stderr
    for bad, reason in [("threshold", "expected KEY=VALUE"), ("threshold=NaN", "NaN")]:
        result = run_chat("--url", f"{gateway}/v1", "--set", bad)
        assert result.returncode == 2
        assert reason in result.stderr


def test_api_key(tmp_path: Path) -> None:
    catalog = {
        "backends": {"echo": {"kind": "echo"}},
        "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
    }
    with serve_gateway(write_catalog(tmp_path, catalog), api_keys=["sk-chat"]) as url:
        refused = run_chat("--url", f"{url}/v1", "--api-key", "sk-wrong")
        assert refused.returncode == 1
        assert refused.stderr.startswith("tandem chat: HTTP 401 (invalid_api_key): ")
        result = run_chat("--url", f"{url}/v1", stdin="hi\n", env={"TANDEM_API_KEY": "sk-chat"})
        assert (result.returncode, result.stdout) == (0, "You said: hi\n"), result.stderr


def test_serve_starts_tandem_in_process(tmp_path: Path) -> None:
    catalog = {
        "backends": {"echo": {"kind": "echo", "prefix": "Served:"}},
        "models": {"parrot": {"policy": "direct", "backends": {"main": "echo"}}},
    }
    path = write_catalog(tmp_path, catalog)
    with chat("--serve", "--config", str(path), "--no-color") as child:
        child.expect_exact(PROMPT, timeout=60)
        assert ask(child, "hello there") == "Served: hello there\n"
        assert quit_chat(child) == 0


def styled_chars(raw: str) -> list[tuple[str, str]]:
    """Each character of terminal output with the SGR parameters in force where it was drawn."""
    chars: list[tuple[str, str]] = []
    style, position = "", 0
    for match in SGR.finditer(raw):
        chars += [(style, c) for c in raw[position : match.start()]]
        style = "" if match.group(1) in ("", "0") else match.group(1)
        position = match.end()
    return chars + [(style, c) for c in raw[position:]]


def test_colours_follow_the_model_that_wrote_each_token(default_gateway: str) -> None:
    """The real models: small's text and large's text are drawn in two different styles."""
    overrides = [f"--set={key}={value}" for key, value in MIXED.items()]
    args = ["--url", f"{default_gateway}/v1", "--model", "tandem-collab", "--max-tokens", "16"]
    with chat(*args, *overrides) as child:
        child.expect_exact(PROMPT, timeout=60)
        assert "small" in str(child.before)  # the legend
        raw = ask(child, QUESTION)
        stats = parse_stats(OTHER_CSI.sub("", ask(child, "/stats")))
        assert quit_chat(child) == 0
    messages = [{"role": "user", "content": QUESTION}]
    content, pieces, report, _ = sdk_stream(
        default_gateway, "tandem-collab", messages, cache="no-store", max_tokens=16, **MIXED
    )
    assert {"small", "large"} <= {source for source, _ in pieces}, pieces
    assert "\x1b[" in raw
    shown = OTHER_CSI.sub("", raw).replace("\r", "")
    if QUESTION in shown:  # a readline that echoes even with the terminal's echo off
        shown = shown[shown.rindex(QUESTION) + len(QUESTION) :].removeprefix("\n")
    chars = styled_chars(shown)
    assert "".join(c for _, c in chars) == content + "\n"
    sources = [source for source, text in pieces for _ in text]
    pairs = set(zip(sources, [style for style, _ in chars[:-1]], strict=True))
    style_of = dict(pairs)
    assert len(style_of) == len(pairs), f"a source drawn in more than one style: {pairs}"
    assert style_of["small"] != style_of["large"], pairs
    assert_stats_match(stats, report)

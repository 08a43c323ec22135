"""The playground in a real headless Chromium (Debian's, driven by Playwright; `make test`
installs it with scripts/ensure-chromium.sh). The page is used as a person would: keyboard
and clicks, then what it shows is compared with what the server sent."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, Playwright, Request, expect, sync_playwright

from tests.e2e.conftest import MIXED, QUESTION
from tests.servers import serve_gateway, write_catalog

CHROMIUM = os.environ.get("TANDEM_CHROMIUM", "chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHAT = "/v1/chat/completions"
ENDED = re.compile(r"^(done|failed|stopped)$")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = shutil.which(CHROMIUM)
    if executable is None:
        pytest.skip(f"no {CHROMIUM} on PATH: make test installs Debian's chromium")
    browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def open_playground(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/playground")
    page.wait_for_selector("body[data-ready=true]")


def sse_chunks(body: str) -> list[dict[str, Any]]:
    frames = [f.removeprefix("data: ") for f in body.split("\n\n") if f.startswith("data: ")]
    return [orjson.loads(f) for f in frames if f != "[DONE]"]


def text_by_source(chunks: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices", []):
            text = choice["delta"].get("content")
            if text:
                source = choice["tandem"]["source"]
                out[source] = out.get(source, "") + text
    return out


def shown_by_source(page: Page, run: int) -> dict[str, str]:
    spans = page.locator(".run").nth(run).locator(".answer .tok")
    out: dict[str, str] = {}
    for source, text in spans.evaluate_all("s => s.map(e => [e.dataset.source, e.textContent])"):
        out[source] = out.get(source, "") + text
    return out


def stat(page: Page, run: int, name: str) -> str:
    return page.locator(".run").nth(run).locator(f'[data-stat="{name}"]').inner_text()


def style_of(page: Page, run: int, source: str) -> dict[str, str]:
    token = page.locator(".run").nth(run).locator(f".answer .tok[data-source={source}]").first
    return token.evaluate(
        """e => { const s = getComputedStyle(e); return {
            background: s.backgroundColor, weight: s.fontWeight,
            decoration: s.textDecorationLine }; }"""
    )


def keep_runs(page: Page, count: int) -> None:
    while page.locator(".run").count() > count:
        page.locator(".run .remove-run").last.click()


def send(page: Page, while_streaming: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Send with the keyboard and wait for every run to end; the request bodies the page sent.

    Chromium keeps no body of a streamed fetch, so what the server answers is read by
    sending the page's exact request again (greedy decoding: the same answer)."""
    sent: list[dict[str, Any]] = []

    def note(request: Request) -> None:
        if request.url.endswith(CHAT):
            sent.append(orjson.loads(request.post_data or "{}"))

    page.on("request", note)
    page.locator("#messages .content").first.focus()
    page.keyboard.press("Control+Enter")  # the page marks each run 'waiting' at once
    if while_streaming is not None:
        while_streaming()
    states = page.locator('[data-stat="state"]')
    for i in range(states.count()):
        expect(states.nth(i)).to_have_text(ENDED, timeout=120_000)
    page.remove_listener("request", note)
    return sent


def replay(base_url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.Client(timeout=120) as http:
        response = http.post(f"{base_url}{CHAT}", json=body)
    assert response.status_code == 200, response.text
    return sse_chunks(response.text)


def test_collab_tokens_show_their_source_and_the_stats_match_the_report(
    page: Page, default_gateway: str, tmp_path: Path
) -> None:
    open_playground(page, default_gateway)
    keep_runs(page, 1)
    run = page.locator(".run").first
    run.locator(".alias").select_option("tandem-collab")
    run.locator(".trigger").select_option(MIXED["trigger"])
    run.locator(".threshold").fill(str(MIXED["threshold"]))
    page.locator("#max-tokens").fill("16")
    page.locator("#no-cache").check()
    page.locator("#messages .content").first.fill(QUESTION)

    live = page.locator('.run [data-stat="tokens"]')
    (body,) = send(
        page, lambda: expect(live).to_have_text(re.compile(r"^(small|large) \d+.* \.\.\.$"))
    )
    assert body["tandem"] == {"provenance": True, "cache": "no-cache", **MIXED}
    assert body["stream"] is True
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)

    chunks = replay(default_gateway, body)
    sent = text_by_source(chunks)
    assert set(sent) == {"small", "large"}, sent  # the setting makes both models write
    assert shown_by_source(page, 0) == sent
    small, large = style_of(page, 0, "small"), style_of(page, 0, "large")
    assert small["background"] != large["background"]
    assert small["weight"] != large["weight"]  # not colour alone
    assert "underline" in large["decoration"]

    report = chunks[-1]["tandem"]
    tokens = ", ".join(f"{source} {n}" for source, n in report["tokens"].items())
    assert stat(page, 0, "tokens") == tokens
    assert float(stat(page, 0, "upload_ratio")) == report["upload_ratio"]
    assert int(stat(page, 0, "interventions")) == report["interventions"] > 0
    assert stat(page, 0, "degraded") == ("yes" if report["degraded"] else "no")
    assert stat(page, 0, "cache") == report["cache"]
    assert stat(page, 0, "ttft").endswith(" ms")
    assert float(stat(page, 0, "tps")) > 0


def test_side_by_side_small_only_and_large_only(page: Page, default_gateway: str) -> None:
    open_playground(page, default_gateway)
    page.get_by_role("button", name="Small only, collab, large only").click()
    assert page.locator(".run").count() == 3
    page.locator(".run").nth(1).locator(".remove-run").click()  # keep the two baselines
    page.locator("#max-tokens").fill("6")
    page.locator("#messages .content").first.fill(QUESTION)

    bodies = send(page)
    assert sorted(b["tandem"]["trigger"] for b in bodies) == ["always", "never"]
    shown = [shown_by_source(page, i) for i in range(2)]
    assert [set(s) for s in shown] == [{"small"}, {"large"}]
    by_trigger = {b["tandem"]["trigger"]: b for b in bodies}
    for i, trigger in enumerate(["never", "always"]):
        assert text_by_source(replay(default_gateway, by_trigger[trigger])) == shown[i]
    assert {stat(page, i, "upload_ratio") for i in range(2)} == {"0", "1"}


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    catalog = {
        "backends": {"echo": {"kind": "echo"}},
        "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
    }
    path = write_catalog(tmp_path_factory.mktemp("keyed"), catalog)
    with serve_gateway(path, api_keys="sk-play-1") as url:
        yield url


def test_a_key_typed_into_the_page_unlocks_the_api(page: Page, keyed_gateway: str) -> None:
    open_playground(page, keyed_gateway)
    assert "Could not list models" in page.locator("#status").inner_text()
    assert page.locator(".run").count() == 0

    page.locator("#api-key").fill("sk-play-1")
    page.locator("#api-key").press("Tab")  # change event: the page lists the models again
    page.locator("#status", has_text=re.compile(r"^1 models$")).wait_for()
    page.get_by_role("button", name="Add a run").click()
    page.locator("#messages .content").first.fill("hello from the page")
    (body,) = send(page)
    assert body["messages"] == [{"role": "user", "content": "hello from the page"}]
    assert shown_by_source(page, 0) == {"main": "You said: hello from the page"}
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    page.locator("#api-key").fill("sk-wrong")
    page.locator("#send").click()
    error = page.locator(".run .error")
    error.wait_for()
    assert error.inner_text() == "Incorrect API key provided."
    assert stat(page, 0, "state") == "failed"


def test_a_plan_streams_into_its_own_panel(page: Page, default_gateway: str) -> None:
    open_playground(page, default_gateway)
    keep_runs(page, 1)
    run = page.locator(".run").first
    run.locator(".alias").select_option("tandem-hawkeye")
    expect(run.locator(".knobs-collab")).to_be_hidden()
    run.locator(".plan-budget").fill("8")
    page.locator("#max-tokens").fill("6")
    page.locator("#messages .content").first.fill("Tom has 3 apples and buys 4 more. How many?")

    (body,) = send(page)
    assert body["tandem"]["plan_max_tokens"] == 8
    chunks = replay(default_gateway, {**body, "tandem": {**body["tandem"], "cache": "no-store"}})
    plan = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"]
    )
    assert plan
    expect(run.locator(".plan")).to_be_visible()
    assert (
        run.locator(".plan-text .tok").evaluate_all("s => s.map(e => e.textContent).join('')")
        == plan
    )
    assert set(
        run.locator(".plan-text .tok").evaluate_all("s => s.map(e => e.dataset.source)")
    ) == {"plan"}
    assert stat(page, 0, "tokens").startswith("plan ")

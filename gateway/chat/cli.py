"""`tandem chat`: a streaming chat in the terminal against a running Tandem (or, with `--serve`,
one started in this process), each token styled by the model that wrote it.

It speaks the standard streaming API plus the provenance extension, like any client would. Only
`--serve` builds the server's app, and with it whatever model runtime the catalog needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, aclosing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.chat.client import Alias, Answer, ChatClient, ChatError
from gateway.chat.render import Renderer, for_stream, stats_lines
from gateway.core.config import CatalogError

DESCRIPTION = (
    "A streaming chat against a running Tandem (or one started with --serve); each token is\n"
    "styled by the model that wrote it: small, large, plan (HAWKEYE), cache."
)
DEFAULT_URL = "http://127.0.0.1:8000/v1"
PROMPT = "you> "
SHUTDOWN_SECONDS = 10.0
EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HELP = """commands:
  /alias            list the aliases (* marks the current one)
  /alias NAME       talk to another alias (the conversation is kept)
  /stats            the last response: tokens by source, upload ratio, interventions, timing
  /reset            forget the conversation (alias and settings stay)
  /set KEY=VALUE    a `tandem` override for the next requests (VALUE as JSON, else a string)
  /set KEY=         remove one;  /set  shows them
  /help             these commands
  /quit             leave (so do Ctrl-D, and Ctrl-C at the prompt)
Ctrl-C during an answer stops it. A line starting with // is sent with one / removed."""


class UsageError(Exception):
    """A bad option: exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `chat` subcommand's options."""
    parser.add_argument("--url", help=f"Tandem's base URL (default $TANDEM_URL or {DEFAULT_URL})")
    parser.add_argument("--model", help="alias (default: the first collab alias, else the first)")
    # never $OPENAI_API_KEY: that key is OpenAI's, and --url may point anywhere
    parser.add_argument("--api-key", help="default $TANDEM_API_KEY")
    parser.add_argument("--temperature", type=float, default=0.0, help="default 0 (greedy)")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="default 128 (a HAWKEYE plan counts in it)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a `tandem` override, repeatable: --set threshold=0.8 --set trigger=entropy",
    )
    parser.add_argument("--system", help="a system message opening the conversation")
    parser.add_argument("--no-color", action="store_true", help="plain text, no escape codes")
    parser.add_argument("--serve", action="store_true", help="start Tandem in this process")
    parser.add_argument("--config", type=Path, help="with --serve: the catalog to serve")


def parse_override(item: str) -> tuple[str, Any]:
    """`KEY=VALUE`, VALUE as JSON when it parses, else the string itself."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not KEY.fullmatch(key):
        raise UsageError(f"bad --set {item!r}: expected KEY=VALUE, e.g. threshold=0.8")
    if key == "provenance":
        raise UsageError("provenance is always on in tandem chat")
    if not raw:
        raise UsageError(f"bad --set {item!r}: the value is empty")
    try:
        return key, json.loads(raw, parse_constant=_refuse_constant)
    except NotJSON as exc:
        raise UsageError(f"bad --set {item!r}: {exc}") from None
    except ValueError:
        return key, raw


class NotJSON(Exception):
    """NaN or Infinity: Python's json reads them, the server (rightly) refuses them."""


def _refuse_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a number JSON can carry")


@dataclass
class Conversation:
    """The chat's state: who it talks to, with what settings, and what was said."""

    alias: str
    aliases: list[Alias]
    temperature: float
    max_tokens: int
    system: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)
    last: Answer | None = None

    def body(self, user: str) -> dict[str, Any]:
        opening = [{"role": "system", "content": self.system}] if self.system else []
        return {
            "model": self.alias,
            "messages": [*opening, *self.history, {"role": "user", "content": user}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "tandem": {**self.overrides, "provenance": True},
        }

    def keep(self, user: str, answer: Answer) -> None:
        self.history += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer.content},
        ]
        self.last = answer

    def known(self) -> str:
        return ", ".join(a.id for a in self.aliases)


def pick_alias(aliases: list[Alias], wanted: str | None) -> str:
    if not aliases:
        raise ChatError("the server lists no model aliases")
    if wanted is None:
        return next((a.id for a in aliases if a.policy == "collab"), aliases[0].id)
    if wanted not in {a.id for a in aliases}:
        known = ", ".join(a.id for a in aliases)
        raise UsageError(f"unknown model {wanted!r}; known: {known}")
    return wanted


async def turn(client: ChatClient, chat: Conversation, ui: Renderer, user: str) -> bool:
    """One answer, printed as it streams; kept in the history only once it is complete. True
    when Ctrl-C stopped it."""
    answer = Answer()
    ui.begin()
    complete = False
    with ctrl_c() as stopped:
        try:
            async with aclosing(client.chat(chat.body(user), answer)) as pieces:
                async for piece in pieces:
                    if stopped.is_set():
                        break
                    ui.piece(piece)
            complete = not stopped.is_set()
        except asyncio.CancelledError:
            if not stopped.is_set():
                raise
        finally:
            ui.end(complete)
    if complete:
        chat.keep(user, answer)
    return not complete


@contextmanager
def ctrl_c() -> Iterator[asyncio.Event]:
    """Ctrl-C cancels the running answer and sets the event. The answer also checks the event
    at each piece: a cancellation that lands while the HTTP client shields a section from
    cancellation is absorbed there, and the answer would stream on (seen under load)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopped = asyncio.Event()

    def interrupt() -> None:
        stopped.set()
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here: asyncio's own
        installed = False
    try:
        yield stopped
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
        if stopped.is_set() and task is not None:
            task.uncancel()


def command(line: str, chat: Conversation, ui: Renderer) -> bool:
    """Run one `/command`; False means leave."""
    name, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if name in ("quit", "exit", "q"):
        return False
    if name == "help":
        ui.info(HELP)
    elif name == "alias":
        alias_command(rest, chat, ui)
    elif name == "stats":
        ui.info("\n".join(stats_lines(chat.last)) if chat.last else "no response yet")
    elif name == "reset":
        chat.history.clear()
        chat.last = None
        ui.info("conversation forgotten")
    elif name == "set":
        set_command(rest, chat, ui)
    else:
        ui.error(f"unknown command /{name}; /help lists them")
    return True


def alias_command(name: str, chat: Conversation, ui: Renderer) -> None:
    if not name:
        for a in chat.aliases:
            ui.info(f"{'*' if a.id == chat.alias else ' '} {a.id} ({a.policy})")
    elif name not in {a.id for a in chat.aliases}:
        ui.error(f"unknown alias {name!r}; known: {chat.known()}")
    else:
        chat.alias = name
        ui.info(f"now talking to {name}")


def set_command(item: str, chat: Conversation, ui: Renderer) -> None:
    if not item:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in chat.overrides.items())
        ui.info(f"overrides: {shown or 'none'}")
        return
    key, sep, raw = item.partition("=")
    try:
        if sep and not raw and KEY.fullmatch(key.strip()):
            chat.overrides.pop(key.strip(), None)
        else:
            key, value = parse_override(item)
            chat.overrides[key] = value
    except UsageError as exc:
        ui.error(str(exc).replace("--set", "/set"))
        return
    set_command("", chat, ui)


def read_line(interactive: bool) -> str | None:
    """The next line, or None at EOF or Ctrl-C (which leave)."""
    try:
        return input(PROMPT if interactive else "")
    except (EOFError, KeyboardInterrupt):
        if interactive:
            print(file=sys.stderr)
        return None


def chat_loop(runner: asyncio.Runner, client: ChatClient, chat: Conversation, ui: Renderer) -> int:
    """Read lines until /quit or EOF; a failed or stopped turn is reported and forgotten."""
    interactive = sys.stdin.isatty()
    while (line := read_line(interactive)) is not None:
        if not line.strip():
            continue
        if line.startswith("/") and not line.startswith("//"):
            if not command(line.strip(), chat, ui):
                break
            continue
        user = line[1:] if line.startswith("//") else line
        try:
            if runner.run(turn(client, chat, ui, user)):
                ui.stopped()
        except KeyboardInterrupt:
            ui.stopped()
        except ChatError as exc:
            ui.error(str(exc))
    return EXIT_OK


def session(runner: asyncio.Runner, client: ChatClient, args: argparse.Namespace) -> int:
    """Look the aliases up, pick one, greet, chat."""
    ui = Renderer(plain=args.no_color)
    try:
        aliases = runner.run(client.models())
        alias = pick_alias(aliases, args.model)
    except UsageError as exc:
        ui.error(str(exc))
        return EXIT_USAGE
    except ChatError as exc:
        ui.error(str(exc))
        return EXIT_UNREACHABLE
    chat = Conversation(alias, aliases, args.temperature, args.max_tokens, args.system)
    chat.overrides = dict(parse_override(item) for item in args.set)
    if ui.colour and sys.stdin.isatty():
        # line editing and history for input(); only with colour, as readline writes escape codes
        import readline  # noqa: F401
    if ui.colour:
        ui.legend(alias)
    return chat_loop(runner, client, chat, ui)


def check_options(args: argparse.Namespace) -> None:
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UsageError("--temperature must be a number >= 0")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if args.config is not None and not args.serve:
        raise UsageError("--config needs --serve (a running Tandem has its own catalog)")
    if args.serve and args.url:
        raise UsageError("--url and --serve exclude each other")
    for item in args.set:
        parse_override(item)


@contextmanager
def serving(config: Path | None) -> Iterator[str]:
    """Tandem in a background thread on a free loopback port; yields its `/v1` URL."""
    import uvicorn

    from gateway.core.config import settings_from_env
    from gateway.observability.logs import configure_logging
    from gateway.server.app import build_state, create_app

    settings = settings_from_env(config=config)
    build_state(settings)  # a bad catalog fails here, before anything starts
    configure_logging("warning")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", log_config=None
        )
    )
    thread = threading.Thread(target=server.run, name="tandem-serve", daemon=True)
    print("tandem chat: starting Tandem in this process ...", file=sys.stderr)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise ChatError("the in-process Tandem did not start (see the log above)")
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=SHUTDOWN_SECONDS)  # a daemon thread: what is left dies with us


def main(args: argparse.Namespace) -> int:
    """`tandem chat`; returns the exit status."""
    try:
        check_options(args)
    except UsageError as exc:
        print(f"tandem chat: {exc}", file=sys.stderr)
        return EXIT_USAGE
    key = args.api_key or os.environ.get("TANDEM_API_KEY")
    try:
        with ExitStack() as stack:
            url = args.url or os.environ.get("TANDEM_URL") or DEFAULT_URL
            if args.serve:
                try:
                    url = stack.enter_context(serving(args.config))
                except CatalogError as exc:
                    print(f"tandem chat: bad catalog: {exc}", file=sys.stderr)
                    return EXIT_USAGE
                except ValueError as exc:  # settings from TANDEM_* that do not validate
                    print(f"tandem chat: bad settings: {exc}", file=sys.stderr)
                    return EXIT_USAGE
            with asyncio.Runner() as runner:
                client = ChatClient(url, key)
                runner.run(client.open())
                try:
                    return session(runner, client, args)
                finally:
                    runner.run(client.aclose())
    except ChatError as exc:  # its text may come from the server
        print(f"tandem chat: {for_stream(str(exc), sys.stderr)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED

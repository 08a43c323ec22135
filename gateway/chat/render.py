"""What `tandem chat` prints: each piece styled by the model that wrote it, with rich.

Model text is written as rich `Segment`s, never as `Text` or markup: `Text` would expand tabs
and strip only some control characters, markup would read `[` as a tag. On a terminal, every
control character but newline and tab is removed from what the server sent (model text, plans,
error messages, alias names): an escape sequence in an answer could set the clipboard (OSC 52),
clear the screen or retitle the window. To a pipe with `--no-color` (or any output that is not a
terminal) there are no escape codes and the bytes are exactly the API's content.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style
from rich.text import Text

from gateway.chat.client import Answer, Piece

# styles differ in more than hue (bold, underline, italic, dim), for colour-blind readers and
# terminals with few colours
STYLES: dict[str, Style | None] = {
    "small": Style(color="cyan"),
    "large": Style(color="dark_orange", bold=True, underline=True),
    "plan": Style(color="magenta", italic=True, dim=True),
    "cache": Style(color="green", dim=True),
    "main": None,
}
#: C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI, 0x9d an OSC)
CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}
PLAN_LABEL = Style(color="magenta", bold=True)
MUTED = Style(dim=True)
ERROR = Style(color="red", bold=True)


def make_console(plain: bool, stderr: bool = False) -> Console:
    """A console that never interprets model text; `plain` writes no escape code at all."""
    if plain:
        return Console(
            stderr=stderr,
            color_system=None,
            no_color=True,
            highlight=False,
            markup=False,
            emoji=False,
        )
    return Console(stderr=stderr, highlight=False, markup=False, emoji=False)


class Renderer:
    """Prints answers as they stream, command output, and one-line errors."""

    def __init__(self, plain: bool) -> None:
        self.plain = plain
        self.out = make_console(plain)
        self.err = make_console(plain, stderr=True)
        self._in_plan = False
        self._wrote = False

    @property
    def colour(self) -> bool:
        return not self.plain and self.out.is_terminal and self.out.color_system is not None

    def legend(self, alias: str) -> None:
        line = Text.assemble(
            ("tandem chat", "bold"),
            f" · {alias} · written by ",
            *((f"{name} ", STYLES[name] or "") for name in ("small", "large", "plan", "cache")),
            ("· /help for commands", MUTED),
        )
        self.out.print(line, soft_wrap=True)

    def begin(self) -> None:
        self._in_plan = False
        self._wrote = False

    def piece(self, piece: Piece) -> None:
        """Print one piece now; the plan goes first, after a label (to stderr when plain)."""
        if piece.reasoning:
            target = self.err if self.plain else self.out
            if not self._in_plan:
                write(target, "plan: ", PLAN_LABEL)
                self._in_plan = True
            write(target, piece.text, STYLES["plan"])
            return
        self._end_plan()
        write(self.out, piece.text, STYLES.get(piece.source))
        self._wrote = True

    def end(self, complete: bool) -> None:
        """Close the answer's line: always after a complete answer, else only if one was begun."""
        self._end_plan()
        if complete or self._wrote:
            write(self.out, "\n", None)
        self._wrote = False

    def stopped(self) -> None:
        self.err.print(Text("(stopped)", MUTED))

    def info(self, text: str) -> None:
        self.out.print(Text(shown(self.out, text)), soft_wrap=True)

    def error(self, message: str) -> None:
        self.err.print(Text(f"tandem chat: {shown(self.err, message)}", ERROR), soft_wrap=True)

    def _end_plan(self) -> None:
        if self._in_plan:
            write(self.err if self.plain else self.out, "\n", None)
            self._in_plan = False


def write(console: Console, text: str, style: Style | None) -> None:
    segment = Segment(shown(console, text), style)
    console.print(Segments([segment]), end="", crop=False, soft_wrap=True)


def for_stream(text: str, stream: TextIO) -> str:
    """`text` for a stream written outside rich: the same rule as `shown`."""
    return text.translate(CONTROLS) if stream.isatty() else text


def shown(console: Console, text: str) -> str:
    """`text` as it may reach `console`: without control characters on a terminal, as is
    otherwise (a pipe gets the exact bytes)."""
    return text.translate(CONTROLS) if console.is_terminal else text


def stats_lines(answer: Answer) -> list[str]:
    """`/stats`: the last response's report, and its timing as this client saw it."""
    report = answer.report
    tokens = report.get("tokens") or {}
    by_source = ", ".join(f"{source} {n}" for source, n in tokens.items()) or "none reported"
    completion = answer.usage.get("completion_tokens")
    if completion is None:
        completion = sum(n for source, n in tokens.items() if source != "plan") or answer.pieces
    lines = [
        f"policy: {report.get('policy', '?')}",
        f"tokens: {by_source}",
        f"upload ratio: {report.get('upload_ratio', '?')}",
        f"interventions: {report.get('interventions', '?')}",
    ]
    if answer.first_token is not None:
        lines.append(f"ttft: {(answer.first_token - answer.started) * 1000:.0f} ms")
    if answer.ended is not None and answer.ended > answer.started:
        seconds = answer.ended - answer.started
        lines.append(
            f"tokens/s: {completion / seconds:.1f} ({completion} tokens in {seconds:.2f} s)"
        )
    lines.append(f"degraded: {'yes' if report.get('degraded') else 'no'}")
    lines.append(f"cache: {report.get('cache', '?')}")
    return lines

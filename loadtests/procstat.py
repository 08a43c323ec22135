"""CPU time and resident memory of a process and its children, read from /proc (Linux only)."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss_bytes: int
    # Time its threads were runnable but waited for a core: on a shared machine this is how much
    # other work stole from the process under test.
    wait_s: float = 0.0


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (uvicorn workers, LiteLLM's subprocesses)."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = parents.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def run_queue_wait_s(pid: int) -> float:
    """Seconds the threads of `pid` spent runnable but not running (/proc/PID/task/*/schedstat)."""
    waited = 0
    for task in (PROC / str(pid) / "task").glob("*/schedstat"):
        try:
            waited += int(task.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return waited / 1e9


def usage(pid: int) -> Usage:
    """CPU seconds (user + system), RSS and run-queue wait over `pid` and its descendants."""
    cpu = 0.0
    rss = 0
    wait = 0.0
    for member in [pid, *children(pid)]:
        try:
            fields = _stat_fields(member)
        except OSError:
            continue  # exited between listing and reading
        # After the name: state is index 0, utime 11, stime 12, rss (pages) 21.
        cpu += (int(fields[11]) + int(fields[12])) / TICKS
        rss += int(fields[21]) * PAGE
        wait += run_queue_wait_s(member)
    return Usage(cpu, rss, wait)


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


def own_usage() -> Usage:
    """This process's CPU seconds (all threads) and run-queue wait: the load generator's cost."""
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = self_usage.ru_utime + self_usage.ru_stime
    return Usage(cpu, self_usage.ru_maxrss * 1024, run_queue_wait_s(os.getpid()))

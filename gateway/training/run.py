"""`tandem router collect`: a catalog's collab pair over a prompt set, into one rows file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from gateway.models.progress import progress
from gateway.training.collect import Pair, Setup, collect
from gateway.training.dataset import Header, prepare, record_line
from gateway.training.prompts import Prompt


@dataclass
class Summary:
    prompts: int = 0
    skipped: int = 0  # already in the file
    rows: int = 0
    diverging: int = 0


async def collect_into(
    pair: Pair, prompts: list[Prompt], setup: Setup, path: Path, source: str, concurrency: int = 1
) -> Summary:
    """Collect every prompt the file does not hold yet. Prompts run `concurrency` at a time:
    an HTTP large model serves them in parallel, in-process models interleave them token by
    token on their worker threads."""
    header = Header(
        {"small": pair.small.fingerprint, "large": pair.large.fingerprint},
        setup.top_k,
        setup.max_tokens,
        source,
    )
    done = prepare(path, header)
    todo = [p for p in prompts if p.id not in done]
    summary = Summary(skipped=len(prompts) - len(todo))
    gate = asyncio.Semaphore(max(concurrency, 1))
    with progress(len(todo), "collect", unit="prompt") as bar, path.open("a") as out:

        async def one(prompt: Prompt) -> None:
            async with gate:
                record = await collect(pair, prompt, setup)
            out.write(record_line(record))
            out.flush()
            summary.prompts += 1
            summary.rows += len(record.rows)
            summary.diverging += sum(r.diverge for r in record.rows)
            bar.update()
            bar.set_postfix_str(f"rows {summary.rows}, diverging {summary.diverging}")

        await asyncio.gather(*(one(p) for p in todo))
    return summary

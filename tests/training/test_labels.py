"""Labels on constructed cases: character models that follow rules (tests/training/rules.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.training.collect import Pair, Setup, _disagree, collect
from gateway.training.dataset import DatasetError, read
from gateway.training.prompts import Prompt
from gateway.training.run import collect_into
from tests.training.rules import RuleModel

PROMPT = Prompt("q1", text="capital of France?|", targets=["Paris"])


def pair(same_vocab: bool) -> Pair:
    # the small model says Parma, but once on the way to Paris it finishes Paris
    small = RuleModel(["Parma", "Paris"], offset=1)
    large = RuleModel(["Paris"], offset=1 if same_vocab else 200)
    return Pair(small, large)  # type: ignore[arg-type]


@pytest.mark.parametrize("same_vocab", [True, False], ids=["token ids", "text"])
async def test_labels_mark_where_the_large_model_would_write_otherwise(same_vocab: bool) -> None:
    chosen = pair(same_vocab)
    assert chosen.same_vocab is same_vocab
    record = await collect(chosen, PROMPT, Setup(max_tokens=16))
    assert record.answer == "Parma"
    assert record.correct is False
    # P a r | m a | end: the large model writes i where the small writes m, s where it writes a
    assert [r.diverge for r in record.rows] == [0, 0, 0, 1, 1, 0]
    # the large model's i leads the small one to Paris (right); its s leads to Parms (wrong)
    assert [r.critical for r in record.rows] == [0, 0, 0, 1, 0, 0]
    assert [r.position for r in record.rows] == list(range(6))
    assert record.rows[3].hidden == [3.0, float(record.rows[3].token % 7)]


async def test_a_right_answer_has_no_critical_positions() -> None:
    record = await collect(pair(True), Prompt("q", text="x|", targets=["Parma"]), Setup())
    assert record.correct is True
    assert sum(r.diverge for r in record.rows) == 2
    assert all(r.critical == 0 for r in record.rows)


async def test_without_targets_there_is_no_critical_label() -> None:
    record = await collect(pair(True), Prompt("q", text="x|"), Setup())
    assert record.correct is None
    assert {r.critical for r in record.rows} == {None}


async def test_the_answer_stops_at_max_tokens_and_stop_strings() -> None:
    record = await collect(pair(True), PROMPT, Setup(max_tokens=2))
    assert record.answer == "Pa"
    assert len(record.rows) == 2
    stopped = await collect(pair(True), PROMPT, Setup(stops=("r",)))
    assert stopped.answer == "Par"


@pytest.mark.parametrize(
    ("ours", "theirs", "label"),
    [
        (" Paris", " Par", False),
        (" P", " Paris", False),
        (" Paris", " Rome", True),
        (None, None, False),
        (None, ".", True),
        ("", " x", None),
    ],
)
def test_texts_agree_when_one_starts_the_other(
    ours: str | None, theirs: str | None, label: bool | None
) -> None:
    assert _disagree(ours, theirs) is label


async def test_collection_resumes_and_drops_a_torn_record(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    prompts = [Prompt(f"q{i}", text=f"question {i}|", targets=["Paris"]) for i in range(3)]
    chosen = pair(False)
    first = await collect_into(chosen, prompts[:2], Setup(), rows, "test")
    assert (first.prompts, first.skipped) == (2, 0)
    with rows.open("a") as out:
        out.write('{"prompt": "q2", "answer": "Pa')  # a run stopped mid-record
    opened = len(chosen.small.opened)  # type: ignore[attr-defined]
    second = await collect_into(chosen, prompts, Setup(), rows, "test")
    assert (second.prompts, second.skipped) == (1, 2)
    assert len(chosen.small.opened) > opened  # type: ignore[attr-defined]
    header, records = read(rows)
    assert [r["prompt"] for r in records] == ["q0", "q1", "q2"]
    assert header.pair == {"small": "chars-1", "large": "chars-200"}
    assert all(json.loads(line) for line in rows.read_text().splitlines())


async def test_a_rows_file_of_another_pair_is_refused(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    await collect_into(pair(True), [PROMPT], Setup(), rows, "test")
    with pytest.raises(DatasetError, match="another pair or setup"):
        await collect_into(pair(False), [PROMPT], Setup(), rows, "test")
    with pytest.raises(DatasetError, match="another pair or setup"):
        await collect_into(pair(True), [PROMPT], Setup(top_k=4), rows, "test")

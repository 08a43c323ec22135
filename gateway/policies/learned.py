"""The `learned` trigger: a small linear or MLP router read from a JSON file.

```json
{"inputs": ["entropy", "top_logprobs", "hidden"], "top_k": 8, "threshold": 0.5,
 "layers": [{"weight": [[...], ...], "bias": [...]}, {"weight": [[...]], "bias": [0.1]}]}
```
The input vector is the named features of the small model's distribution, concatenated in that
order (`top_logprobs` padded with -30 to `top_k`; `hidden` is the last layer's state at the
position). Layers are `out x in` matrices with ReLU between them; the last has one output, and
its sigmoid is the router's estimate that the small model's token should be replaced. The trigger
fires when that score exceeds the threshold (unlike the paper's router, where a low score meant
"ask the cloud"; flip the last layer's sign to import one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.backends.sessions import Distribution
from gateway.policies.triggers import Trigger, TriggerError, triggers

FEATURES = ("entropy", "top_logprobs", "hidden")
FLOOR = -30.0  # log-prob standing for "not in the top-k"
Matrix = npt.NDArray[np.float64]


class Router:
    """The MLP itself, separate from the trigger so that a trainer can build and save one."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.inputs = [str(name) for name in spec["inputs"]]
        unknown = sorted(set(self.inputs) - set(FEATURES))
        if unknown:
            raise TriggerError(f"unknown router inputs {unknown}; known: {list(FEATURES)}")
        self.top_k = int(spec.get("top_k", 8))
        self.threshold = float(spec.get("threshold", 0.5))
        self.layers = [
            (np.asarray(layer["weight"], dtype=np.float64), np.asarray(layer["bias"], np.float64))
            for layer in spec["layers"]
        ]
        if not self.layers or self.layers[-1][0].shape[0] != 1:
            raise TriggerError("a router's last layer must have exactly one output")

    def features(self, distribution: Distribution) -> Matrix:
        parts: list[list[float]] = []
        for name in self.inputs:
            if name == "entropy":
                parts.append([distribution.entropy])
            elif name == "top_logprobs":
                top = list(distribution.logprobs[: self.top_k])
                parts.append(top + [FLOOR] * (self.top_k - len(top)))
            else:
                if distribution.hidden is None:
                    raise TriggerError("this router needs the small model's hidden state")
                parts.append(distribution.hidden)
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])

    def score(self, distribution: Distribution) -> float:
        x = self.features(distribution)
        for i, (weight, bias) in enumerate(self.layers):
            x = weight @ x + bias
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return float(1.0 / (1.0 + np.exp(-x[0])))

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
        }


def load_router(path: str) -> Router:
    # the message never quotes the file: a router path may come from a request override
    try:
        spec = json.loads(Path(path).read_text())
        return Router(spec)
    except TriggerError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        raise TriggerError("the router file cannot be read as a router") from None


@triggers.register("learned")
class LearnedTrigger(Trigger):
    name = "learned"

    def __init__(self, threshold: float | None, router: Router) -> None:
        super().__init__(router.threshold if threshold is None else threshold)
        self.router = router

    @property
    def needs_hidden(self) -> bool:
        return "hidden" in self.router.inputs

    @classmethod
    def build(cls, threshold: float | None, router: str | None) -> Trigger:
        if not router:
            raise TriggerError("the 'learned' trigger needs a router file ('router')")
        if not router.endswith(".json"):
            raise TriggerError("a router file is a .json file")
        return cls(threshold, load_router(router))

    def fire(self, distribution: Distribution) -> bool:
        return self.router.score(distribution) > float(self.threshold or 0.0)

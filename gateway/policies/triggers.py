"""Triggers: before each token, look at the small model's next-token distribution and decide
whether the large model writes the next span.

```
trigger = triggers.get("entropy").build(threshold=None, router=None)
trigger.fire(distribution) -> bool      True: ask the large model
```

| name      | fires when                        | default threshold |
|-----------|-----------------------------------|-------------------|
| `entropy` | entropy (nats) > threshold        | 1.5               |
| `top1`    | p(top token) < threshold          | 0.4               |
| `margin`  | p(top 1) - p(top 2) < threshold   | 0.2               |
| `learned` | router score > threshold          | the file's own    |
| `never`   | never (the small model alone)     | -                 |
| `always`  | always (the large model alone)    | -                 |

Measured effect (README, "Collaborative decoding": SmolLM2-135M with Gemma-3-270M on 50 short
factual answers, small alone 42%, large alone 48%): `entropy` 2 sent 40% of the tokens to the
large model for 46%, `entropy` 1 sent 46% for 48%; the default 1.5 sits between. `top1` 0.3 sent
28% for 44%. On answers of three or four tokens nearly every uncertain token is a large share of
the answer; longer answers send a smaller share. `learned` lives in its own module because it
needs numpy.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from gateway.backends.sessions import Distribution
from gateway.core.registry import Registry

if TYPE_CHECKING:  # router_spec imports this module (and numpy)
    from gateway.policies.router_spec import Router


class TriggerError(ValueError):
    """A trigger that cannot be built from its parameters."""


class Trigger(ABC):
    name: ClassVar[str]
    default_threshold: ClassVar[float | None] = None

    def __init__(self, threshold: float | None) -> None:
        self.threshold = self.default_threshold if threshold is None else threshold

    @property
    def needs_hidden(self) -> bool:
        """Whether `fire` reads the small model's hidden state (sessions then return it)."""
        return False

    @classmethod
    def build(cls, threshold: float | None, router: Router | None) -> Trigger:
        if router is not None:
            raise TriggerError(f"the '{cls.name}' trigger takes no router file")
        return cls(threshold)

    @abstractmethod
    def fire(self, distribution: Distribution) -> bool: ...


triggers: Registry[Trigger] = Registry("trigger", lazy={"learned": "gateway.policies.learned"})


def probs(distribution: Distribution, n: int) -> list[float]:
    """The top `n` probabilities, padded with zeros (a top-k shorter than n)."""
    top = [math.exp(lp) for lp in distribution.logprobs[:n]]
    return top + [0.0] * (n - len(top))


@triggers.register("entropy")
class EntropyTrigger(Trigger):
    name = "entropy"
    default_threshold = 1.5

    def fire(self, distribution: Distribution) -> bool:
        return distribution.entropy > float(self.threshold or 0.0)


@triggers.register("top1")
class Top1Trigger(Trigger):
    name = "top1"
    default_threshold = 0.4

    def fire(self, distribution: Distribution) -> bool:
        return probs(distribution, 1)[0] < float(self.threshold or 0.0)


@triggers.register("margin")
class MarginTrigger(Trigger):
    name = "margin"
    default_threshold = 0.2

    def fire(self, distribution: Distribution) -> bool:
        first, second = probs(distribution, 2)
        return first - second < float(self.threshold or 0.0)


@triggers.register("never")
class NeverTrigger(Trigger):
    name = "never"

    def fire(self, distribution: Distribution) -> bool:
        return False


@triggers.register("always")
class AlwaysTrigger(Trigger):
    name = "always"

    def fire(self, distribution: Distribution) -> bool:
        return True

"""The `learned` trigger: a router file's MLP scores the small model's next-token distribution,
and the trigger fires when the score exceeds the threshold (the file's own unless the request or
the catalog sets one). The file format is `gateway.policies.router_spec`'s; the catalog's files
are read once, at start-up (`gateway.api.learned_routers`), and every trigger built for a
request shares the loaded router.

The score is the router's estimate that the small model's token should be replaced (unlike the
paper's router, where a low score meant "ask the cloud"; flip the last layer's sign to import
one).
"""

from __future__ import annotations

from gateway.backends.sessions import Distribution
from gateway.policies.router_spec import Router
from gateway.policies.triggers import Trigger, TriggerError, triggers


@triggers.register("learned")
class LearnedTrigger(Trigger):
    name = "learned"

    def __init__(self, threshold: float | None, router: Router) -> None:
        super().__init__(router.threshold if threshold is None else threshold)
        self.router = router

    @property
    def needs_hidden(self) -> bool:
        return self.router.needs_hidden

    @classmethod
    def build(cls, threshold: float | None, router: Router | None) -> Trigger:
        if router is None:
            raise TriggerError("the 'learned' trigger needs a router file ('router')")
        return cls(threshold, router)

    def fire(self, distribution: Distribution) -> bool:
        return self.router.score(distribution) > float(self.threshold or 0.0)

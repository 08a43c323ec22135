"""Which `tandem` keys a client may set on an alias, and to what.

An alias's catalog entry lists them under `overrides`; a key it does not list is refused with a
400 naming `tandem.<key>`. Nothing is overridable by default: a client that could pick the
policy, the role or the trigger could send every token to the expensive model, and one that
could pick the plan cache's scope and lifetime could fill a shared cache.

```yaml
overrides:
  trigger: {choices: [entropy, top1]}   # one of these values
  threshold: {min: 0, max: 5}           # a number in this range (inclusive)
  show_plan: {}                         # any value the policy accepts
  policy: {choices: [direct]}           # switching policy: off unless listed, choices required
```

The values are then validated by the policy like the catalog's own `params`. `provenance` and
`cache` are request options, not overrides: every client may set them (they change what the
caller is shown and how its own answer is cached, never which model works or how hard).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.core.errors import InvalidRequest


class OverrideRule(BaseModel):
    """What a client may set one `tandem` key to; empty: anything the policy accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_anything(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _consistent(self) -> OverrideRule:
        if self.choices is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either choices or a min/max range, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if self.choices is not None:
            if any(_same(value, choice) for choice in self.choices):
                return None
            return "must be one of " + ", ".join(str(c) for c in self.choices)
        if self.min is None and self.max is None:
            return None
        if not _is_number(value) or not self.min_ok(value) or not self.max_ok(value):
            return f"must be a number {self.range_text()}"
        return None

    def min_ok(self, value: float) -> bool:
        return self.min is None or value >= self.min

    def max_ok(self, value: float) -> bool:
        return self.max is None or value <= self.max

    def range_text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"from {self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"of at least {self.min:g}"
        return f"of at most {self.max:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(value: Any, choice: Any) -> bool:
    # True == 1 in Python; a client choosing among [1, 2] must not pass with `true`
    if isinstance(value, bool) or isinstance(choice, bool):
        return value is choice
    comparable = type(value) is type(choice) or (_is_number(value) and _is_number(choice))
    return comparable and bool(value == choice)


def check_overrides(
    alias: str, rules: Mapping[str, OverrideRule], requested: Mapping[str, Any]
) -> None:
    """Raise a 400 naming the first `tandem` key the alias does not let a client set as asked."""
    for key, value in requested.items():
        rule = rules.get(key)
        if rule is None:
            allowed = ", ".join(sorted(rules)) or "none"
            raise InvalidRequest(
                f"'tandem.{key}' cannot be set on the model '{alias}' (settable here: {allowed})",
                param=f"tandem.{key}",
                code="override_not_allowed",
            )
        problem = rule.problem(value)
        if problem is not None:
            raise InvalidRequest(
                f"'tandem.{key}' {problem} on the model '{alias}'",
                param=f"tandem.{key}",
                code="override_not_allowed",
            )

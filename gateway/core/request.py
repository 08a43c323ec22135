"""Request-level rules that policies and backends share: a request's sampling settings, and the
fields a model cannot honour. Both sides call these, so neither reaches into the other."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import UnsupportedField
from gateway.core.protocol import SamplingFields


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to pick a token. `temperature == 0` is greedy; `top_k == 0` means no cut."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def sampling_of(request: SamplingFields, top_k: int | None = None) -> Sampling:
    # OpenAI's default temperature is 1: an unset temperature samples
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = 1.0 if request.top_p is None else request.top_p
    return Sampling(temperature, top_p, max(top_k or 0, 0), request.seed)


def refuse_unsupported(request: SamplingFields, by: str) -> None:
    if request.logit_bias:
        raise UnsupportedField("logit_bias", by)
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise UnsupportedField(name, by)

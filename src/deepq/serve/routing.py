"""A/B routing between model versions: configured weights, sticky per request key, optional shadow.

A request key (a client or account id) hashes to a fixed point in [0, 1), so the same key always lands on
the same arm while the weights stay the same; requests without a key draw a fresh point. The shadow
version, if any, predicts the same inputs after the response is sent, and only its log sees the result.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    ref: str  # a registry reference ('lstm_returns:3', 'production', ...), resolved at startup
    weight: float


def unit_hash(key: str, salt: str = "deepq-ab") -> float:
    """A stable point in [0, 1) for a key (sha256, not Python's per-process hash())."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Router:
    def __init__(
        self, arms: list[Arm], shadow: str | None = None, salt: str = "deepq-ab", seed: int | None = None
    ):
        if not arms:
            raise ValueError("routing needs at least one arm")
        bad = [a for a in arms if not a.weight >= 0]
        if bad or sum(a.weight for a in arms) <= 0:
            raise ValueError(
                f"routing weights must be >= 0 with a positive sum, got {[(a.ref, a.weight) for a in arms]}"
            )
        total = sum(a.weight for a in arms)
        self.arms = arms
        self.shadow = shadow
        self.salt = salt
        self._edges: list[float] = []
        acc = 0.0
        for a in arms:
            acc += a.weight / total
            self._edges.append(acc)
        self._rng = random.Random(seed)

    @classmethod
    def from_weights(cls, weights: Mapping[str, float], shadow: str | None = None, **kw) -> Router:
        return cls([Arm(ref, float(w)) for ref, w in weights.items()], shadow, **kw)

    def choose(self, key: str | None) -> str:
        u = unit_hash(key, self.salt) if key else self._rng.random()
        for arm, edge in zip(self.arms, self._edges, strict=True):
            if u < edge and arm.weight > 0:
                return arm.ref
        return next(a.ref for a in reversed(self.arms) if a.weight > 0)  # u rounding at the top edge

    @property
    def refs(self) -> list[str]:
        return [a.ref for a in self.arms] + ([self.shadow] if self.shadow else [])

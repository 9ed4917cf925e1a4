"""Drawing a fixed number of values from a hypothesis strategy, reproducibly from a seed.

Hypothesis has no public "give me n examples for this seed" call (``strategy.example()`` is for
interactive use and ignores seeds), so this runs a tiny ``@given`` function that collects what
it is given. Shrinking and the example database are off: nothing fails here.
"""

from __future__ import annotations

import zlib
from typing import Any, TypeVar

import hypothesis
from hypothesis import HealthCheck, Phase
from hypothesis.strategies import SearchStrategy

__all__ = ["derive_seed", "draw"]

T = TypeVar("T")


def derive_seed(seed: int, *parts: str) -> int:
    """A seed for one use (an operation, a purpose), derived stably from the run's seed."""
    return zlib.crc32("\x00".join(parts).encode(), seed & 0xFFFFFFFF)


def draw(strategy: SearchStrategy[T], count: int, seed: int) -> list[T]:
    """Up to ``count`` values from ``strategy``, the same ones for the same ``seed``."""
    if count <= 0:
        return []
    found: list[T] = []

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
        derandomize=False,
        print_blob=False,
    )
    @hypothesis.given(strategy)
    def collect(value: Any) -> None:
        if len(found) < count:
            found.append(value)

    collect()
    return found

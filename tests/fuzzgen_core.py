"""The pieces every fuzz generator uses (tests/fuzzgen.py): a case, a mutation, the seeded random
source whose first pick walks through a mutator's variants."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Mutation:
    name: str  # the mutator and its main parameter, e.g. "imu_cell=inf"
    apply: Callable[[Path], None]  # recording folder / shard file / spec path -> damages it in place
    expect: str = "either"  # "error", "success" or "either"
    file: str = ""  # the file name an error message should name (besides the recording id)
    extra: dict = field(default_factory=dict)


@dataclass
class Case:
    kind: str
    seed: int
    mutation: Mutation

    @property
    def id(self) -> str:
        return f"{self.kind}-s{self.seed}"


def rng_for(kind: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(kind.encode()), seed])


class _Rng:
    """A numpy Generator whose first :func:`_pick` takes item ``variant`` (mod the choices): so
    consecutive seeds of one mutator walk through its variants before repeating one."""

    def __init__(self, rng: np.random.Generator, variant: int):
        self._rng = rng
        self.variant: int | None = variant

    def __getattr__(self, name):
        return getattr(self._rng, name)


def _pick(rng, xs):
    if getattr(rng, "variant", None) is not None:
        i, rng.variant = rng.variant % len(xs), None
        return xs[i]
    return xs[int(rng.integers(len(xs)))]


def _rand_bytes(rng, n: int) -> bytes:
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


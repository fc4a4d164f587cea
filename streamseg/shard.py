"""Sharding streams across replicas: replica I of N keeps the streams that hash to shard I.

Each stream goes to the shard with the highest weight ``blake2b(index, name)`` (rendezvous, or
highest-random-weight, hashing). Why rendezvous and not ``hash(name) % N``: when N changes from 3
to 4 a modulo moves about three streams in four to another replica, rendezvous only the quarter
that now scores highest on the new shard (and none between the old ones). The hash is of the
UTF-8 name, never Python's ``hash()``, which is salted per process: every replica, whatever its
interpreter, computes the same split.

The shard comes from ``--shard I/N`` or the ``STREAMSEG_SHARD`` environment variable (same
grammar). A Kubernetes StatefulSet composes the variable from the pod's ordinal (the
``apps.kubernetes.io/pod-index`` label through the downward API; deploy/kubernetes/).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigError

ENV_VAR = "STREAMSEG_SHARD"
MAX_SHARDS = 10_000  # far above any replica count; bounds the per-stream work (one hash per shard)
_SPEC = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``Shard(0, 1)`` keeps every stream."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: needs 0 <= I < N <= {MAX_SHARDS}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def select(self, names: Iterable[str]) -> list[str]:
        """The names this shard keeps, in their given order."""
        return [n for n in names if self.owns(n)]


ALL = Shard(0, 1)


def weight(name: str, index: int) -> int:
    """A stable 64-bit weight of stream ``name`` on shard ``index`` (the same in every process)."""
    digest = hashlib.blake2b(f"{index}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(name: str, count: int) -> int:
    """The shard (0..count-1) a stream belongs to: the one with the highest weight."""
    return max(range(count), key=lambda i: weight(name, i))


def parse_shard(text: str, where: str = "--shard") -> Shard:
    """``"I/N"`` -> Shard; anything else is a one-line usage error naming ``where``."""
    m = _SPEC.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"usage: {where} must look like I/N (e.g. 0/3), got '{text}'")
    index, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError(f"usage: {where}: N must be 1..{MAX_SHARDS}, got '{text}'")
    if index >= count:
        raise ConfigError(f"usage: {where}: I must be 0..N-1, got '{text}'")
    return Shard(index, count)


def resolve_shard(flag: str | None, environ: Mapping[str, str]) -> Shard:
    """The flag if given, else ``STREAMSEG_SHARD`` if set (and not empty), else every stream."""
    if flag is not None:
        return parse_shard(flag, "--shard")
    value = environ.get(ENV_VAR, "")
    return parse_shard(value, ENV_VAR) if value else ALL


__all__ = ["ALL", "ENV_VAR", "Shard", "parse_shard", "resolve_shard", "shard_of", "weight"]

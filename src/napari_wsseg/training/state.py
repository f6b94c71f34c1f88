"""Seeds, RNG states and the deterministic data order that makes resume exact.

The data order of a (stage, epoch) depends only on (seed, stage index, epoch): a
``torch.Generator`` seeded from those builds the permutation (or is handed to the
method's sampler), so a resumed job regenerates the epoch and skips to its step.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and keys (stable across processes and Python runs)."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, stage_index: int, epoch: int) -> torch.Generator:
    """The generator of one (stage, epoch): the same in a straight and a resumed run."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, "data", stage_index, epoch))
    return g


def epoch_order(n: int, generator: torch.Generator, sampler: Any = None) -> list[int]:
    """The epoch's global sample order: the method's sampler, or a seeded permutation."""
    if sampler is not None:
        return [int(i) for i in sampler]
    return torch.randperm(n, generator=generator).tolist()


def shard(order: list[int], rank: int, world: int) -> list[int]:
    """This rank's share of an epoch (DistributedSampler style: padded by wrapping so
    every rank gets the same count, then strided), so ranks see different samples."""
    if world <= 1 or not order:
        return list(order)
    total = -(-len(order) // world) * world
    padded = (order * (total // len(order) + 1))[:total]
    return padded[rank:total:world]


def batches(indices: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches; the last may be smaller (nothing dropped)."""
    b = max(1, int(batch_size))
    return [indices[i : i + b] for i in range(0, len(indices), b)]

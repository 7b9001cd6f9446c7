"""Planning packs: which trials may train together (`pack_key`), the micro-batch that lets
several batch sizes share a pack (`micro_batch`), and how many trials a pack holds on a device
(`pack_size`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from tuner.space import TrialConfig
from tuner.training._memory import training_budget, training_bytes

_MIN_MICRO = 8  # below this, micro-batches cost more steps than packing saves


def pack_key(config: TrialConfig, n_rows: int, micro: int | None) -> tuple[Any, ...]:
    """What trials must share to train in one pack: depth, batch norm, the micro-batch (their
    batch size itself where micro-batches do not apply), and each layer's width to within a
    factor of two (every layer is as wide as the pack's widest: padding costs arithmetic)."""
    batch = max(1, min(config.batch_size, n_rows))
    widths = tuple((units - 1).bit_length() for units in config.units)
    if micro is not None and micro >= _MIN_MICRO and not config.batch_norm and (
            batch % micro == 0 or batch == n_rows):
        return (len(config.units), False, "micro", micro, widths)
    return (len(config.units), config.batch_norm, "batch", batch, widths)


def micro_batch(batch_sizes: Sequence[int]) -> int | None:
    """The largest micro-batch that divides every batch size a space can ask for."""
    sizes = [int(b) for b in batch_sizes]
    if not sizes:
        return None
    micro = math.gcd(*sizes)
    return micro if micro >= _MIN_MICRO else None


# Work per training step that makes a step of a stacked model worth its fixed cost: about 2-4 ms
# of one CPU core (compute then dominates dispatch); on a GPU, far more.
_TARGET_FLOPS = {"cpu": 1e8, "cuda": 4e9}
_MAX_PACK = {"cpu": 32, "cuda": 256}


def pack_size(config: TrialConfig, n_features: int, n_outputs: int, rows: int,
              device: torch.device | str) -> int:
    """How many trials like `config` to train at once on `device`: enough that a step's
    arithmetic outweighs its fixed cost, at most 32 on a CPU (256 on a GPU, as its memory
    allows). How many trials the sampler may be asked for at once is the search's to say
    (`tuner.search.batch_limit`)."""
    device = torch.device(device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    dims = [n_features, *config.units, n_outputs]
    macs = sum(a * b for a, b in itertools.pairwise(dims))
    size = int(_TARGET_FLOPS[kind] / max(1.0, 6.0 * rows * macs))
    size = max(2, min(size, _MAX_PACK[kind]))
    budget_bytes = training_budget(device)
    if budget_bytes is not None:  # K trials take K times one's memory
        per_trial = training_bytes(config, n_features, n_outputs, rows)
        size = min(size, max(1, budget_bytes // max(1, per_trial)))
    return size

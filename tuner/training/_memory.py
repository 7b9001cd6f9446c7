"""What training a configuration needs in memory, checked before it is built: a space may allow
16 layers of 65,536 units (hundreds of GB), and building that would not fail, it would bring the
machine's out-of-memory killer down on the whole study. Such a trial fails alone, with the
figures, and the study goes on.
"""

from __future__ import annotations

import itertools
import os

import torch

from tuner.errors import TunerError
from tuner.space import TrialConfig

# A model's floats live as weights, gradients, two optimizer states (Adam's moments; SGD's
# momentum is one) and the kept best weights.
_COPIES_OF_WEIGHTS = 5
_SHARE_OF_FREE_MEMORY = 0.8  # what one process may plan to take of what the machine has free


class ModelTooLarge(TunerError):
    """Training the configuration would need more memory than the device has free: in a study,
    that trial fails; `tuner train` / `tuner evaluate` exit 2 with the figures."""


def training_bytes(config: TrialConfig, n_features: int, n_outputs: int, rows: int) -> int:
    """Bytes to train `config` on batches of `rows` rows (float32): its weights, their
    gradients, optimizer states and kept copy, and a batch's activations forward and back."""
    dims = [n_features, *config.units, n_outputs]
    weights = sum(a * b + b for a, b in itertools.pairwise(dims))
    activations = 3 * rows * sum(dims)
    return 4 * (_COPIES_OF_WEIGHTS * weights + activations)


def free_bytes(device: torch.device | str) -> int | None:
    """Memory free for training on `device`; None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def training_budget(device: torch.device | str) -> int | None:
    """Bytes that training may plan on: a share of what is free (None: unknown, unchecked)."""
    free = free_bytes(device)
    return None if free is None else int(_SHARE_OF_FREE_MEMORY * free)


def check_fits(config: TrialConfig, n_features: int, n_outputs: int, rows: int,
               device: torch.device | str) -> None:
    """Raise `ModelTooLarge` when training `config` would not fit in `device`'s free memory."""
    needed = training_bytes(config, n_features, n_outputs, rows)
    budget = training_budget(device)
    if budget is not None and needed > budget:
        layers = len(config.units)
        shape = f"{layers} hidden layer{'s' if layers != 1 else ''} of up to " \
            f"{max(config.units)} units" if layers else "no hidden layer"
        raise ModelTooLarge(
            f"the model ({shape}) needs about {_gb(needed)} to train, more than the "
            f"{_gb(budget)} this process may use on {torch.device(device).type}: lower the "
            "space's units or n_layers")


def _gb(count: int) -> str:
    return f"{count / 2**30:,.1f} GB"

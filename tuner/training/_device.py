"""Where training runs: `auto` (CUDA when available), `cpu` or `cuda[:i]`; the data moved there
once per process and device."""

from __future__ import annotations

import dataclasses
import threading

import torch

from tuner.data import Dataset, Split
from tuner.errors import TunerError

DEVICES = ("auto", "cpu", "cuda")
_moved: dict[tuple[int, str], tuple[Dataset, Dataset]] = {}
_lock = threading.RLock()


def resolve_device(name: str | None) -> torch.device:
    """`auto` or None: the first CUDA device when there is one, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TunerError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise TunerError(f"unknown device {name!r}; use auto, cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TunerError(f"device {name!r}: no CUDA device is available here (torch "
                         f"{torch.__version__}); use --device cpu")
    return device


def on_device(data: Dataset, device: torch.device) -> Dataset:
    """`data` with its tensors on `device`, moved once per process (the CPU: `data` itself)."""
    if device.type == "cpu":
        return data
    key = (id(data), str(device))
    with _lock:
        hit = _moved.get(key)
        if hit is not None and hit[0] is data:
            return hit[1]

        def move(split: Split) -> Split:
            return Split(split.x.to(device), split.y.to(device))

        moved = dataclasses.replace(data, train=move(data.train), val=move(data.val),
                                    test=move(data.test),
                                    folds=tuple(on_device(f, device) for f in data.folds))
        _moved[key] = (data, moved)  # the source is kept alive, so its id is not reused
        return moved

"""Several trained MLPs as one model: the average of their class probabilities (classification)
or of their predictions (regression)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_TINY = 1e-12  # a probability every member puts at 0 still has a finite log


class Ensemble(nn.Module):
    """Averages its members. It returns what a single MLP returns, so it evaluates, predicts and
    is logged like one: for classes, the log of the mean probability (a softmax of it gives the
    mean probabilities back); for regression, the mean of the standardised predictions."""

    def __init__(self, members: Sequence[nn.Module], task: str):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.classification = task == "classification"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([member(x) for member in self.members])
        if self.classification:
            return torch.log(torch.softmax(outs, dim=-1).mean(dim=0).clamp_min(_TINY))
        return outs.mean(dim=0)


def average_outputs(outputs: Sequence[torch.Tensor], task: str) -> torch.Tensor:
    """What `Ensemble` returns, from its members' outputs computed already (a re-evaluation
    keeps each fold model's validation outputs, so an ensemble is scored without retraining)."""
    stacked = torch.stack(list(outputs))
    if task == "classification":
        return torch.log(torch.softmax(stacked, dim=-1).mean(dim=0).clamp_min(_TINY))
    return stacked.mean(dim=0)

"""A custom objective for tuner: a tiny CNN (not an MLP) on scikit-learn's 8x8 digits images.

    tuner run examples/custom_cnn.yaml                      # the space names this trainer
    python examples/custom_cnn.py --trials 4                # or through the Python API

tuner samples the parameters of examples/custom_cnn.yaml and calls `train(params, reporter)`;
each `reporter.report(epoch, metrics)` reaches MLflow, the pruner and Ctrl-C handling, and
`reporter.should_stop` applies the space's early-stopping patience.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch import nn


@cache
def _digits() -> tuple[torch.Tensor, ...]:
    """Train / validation images, 1x8x8 each, scaled to [0, 1] (a fixed split)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0,
                                                      stratify=y)
    return x_train, x_val, y_train, y_val


def build(channels: int, kernel: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, kernel_size=kernel, padding="same"), nn.ReLU(),
        nn.MaxPool2d(2),  # 8x8 -> 4x4
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * 16, 10),
    )


def train(params: Mapping[str, Any], reporter: Any) -> dict[str, float]:
    """tuner's custom-objective protocol: sampled params in, per-epoch reports, metrics out."""
    torch.manual_seed(reporter.seed)
    x_train, x_val, y_train, y_val = _digits()
    model = build(int(params["channels"]), int(params["kernel"]), float(params["dropout"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["lr"]))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, reporter.max_epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
        reporter.report(epoch, {
            "train_loss": loss.item(), "val_loss": float(loss_fn(logits, y_val)),
            "val_accuracy": float((logits.argmax(1) == y_val).float().mean())})
        if reporter.should_stop:  # the space's early-stopping patience
            break
    return {"params": float(sum(p.numel() for p in model.parameters()))}


def main() -> None:
    import tuner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--storage", default="custom_cnn.journal")
    parser.add_argument("--no-tracking", action="store_true")
    args = parser.parse_args()
    space = tuner.load_space(__file__.replace(".py", ".yaml"))
    result = tuner.run_study(space, tuner.RunOptions(trials=args.trials, storage=args.storage,
                                                     tracking=not args.no_tracking),
                             objective=train)
    print(f"best val_accuracy {result.best_value:.4f} (trial {result.best_trial}): "
          f"{result.best_params}")


if __name__ == "__main__":
    main()

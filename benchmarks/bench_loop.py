"""1. Epoch time of tuner's loop vs a textbook DataLoader loop; FLOP rate vs the matmul ceiling.

Both sides train the same MLP on the same tensors with the same batch size and optimizer, and
both evaluate on the validation split once per epoch. The textbook side is written the way
Optuna's PyTorch example does it: DataLoader(TensorDataset, shuffle=True), zero_grad(),
per-batch evaluation under no_grad.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks._common import Results, Row, ab_ratio
from tuner.data import Dataset, Scaler, Split
from tuner.space import TrialConfig
from tuner.training import build_mlp, fit


def synthetic(rows: int, features: int = 100, classes: int = 10, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)).astype(np.float32)
    y = rng.integers(0, classes, size=rows)
    x = centers[y] + rng.normal(scale=2.0, size=(rows, features)).astype(np.float32)
    n_val = rows // 5
    return _dataset("synthetic", x[n_val:], y[n_val:], x[:n_val], y[:n_val], classes)


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data.astype(np.float32), bunch.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    n_val = len(y) // 5
    return _dataset("digits", x[n_val:], y[n_val:], x[:n_val], y[:n_val], 10)


def _dataset(name: str, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray,
             classes: int) -> Dataset:
    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                     torch.from_numpy(y.astype(np.int64)))

    features = xt.shape[1]
    return Dataset(name=name, task="classification", train=split(xt, yt), val=split(xv, yv),
                   test=split(xv, yv), n_features=features, n_outputs=classes,
                   feature_scaler=Scaler(np.zeros(features), np.ones(features)),
                   target_scaler=None)


def textbook_epochs(config: TrialConfig, data: Dataset, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_mlp(config, data.n_features, data.n_outputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=config.batch_size,
                       shuffle=True)
    val = DataLoader(TensorDataset(data.val.x, data.val.y), batch_size=config.batch_size)
    for _ in range(epochs):
        model.train()
        for xb, yb in train:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for xb, yb in val:
                correct += int((model(xb).argmax(1) == yb).sum())
                total += len(yb)
        _ = correct / total


def tuner_epochs(config: TrialConfig, data: Dataset, epochs: int, seed: int) -> None:
    fit(config, data, max_epochs=epochs, early_stopping=None, seed=seed)


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def training_flops(config: TrialConfig, data: Dataset) -> float:
    """Multiply-adds x2 of one epoch: forward+backward (3x forward) on train, forward on val."""
    widths = [data.n_features, *config.units, data.n_outputs]
    forward = sum(2 * a * b for a, b in itertools.pairwise(widths))
    return 3 * forward * len(data.train) + forward * len(data.val)


def run(results: Results, quick: bool = False) -> None:
    torch.set_num_threads(1)  # the matmul ceiling below is single-thread too
    repeats = 3 if quick else 5
    sets = [("digits", digits(), 4), ("synthetic 100k", synthetic(20_000 if quick else 100_000), 1)]
    small = TrialConfig(units=(256, 256), batch_size=32)
    for name, data, epochs in sets:
        for batch in (32, 256):
            config = TrialConfig(units=small.units, batch_size=batch)
            tuner_epochs(config, data, 1, 0)  # warm-up: fused kernels, allocator
            ratio, t_book, t_tuner = ab_ratio(
                lambda c=config, d=data, e=epochs: textbook_epochs(c, d, e, 0),
                lambda c=config, d=data, e=epochs: tuner_epochs(c, d, e, 0), repeats)
            target = ">= 3x" if batch == 32 else ""
            results.add(Row("loop", f"{name}, batch {batch}: DataLoader epoch / tuner epoch",
                            ratio, "x", target, ratio >= 3 if batch == 32 else None,
                            f"tuner {t_tuner / epochs * 1000:.0f} ms/epoch, textbook "
                            f"{t_book / epochs * 1000:.0f} ms/epoch"))
    ceiling = matmul_gflops()
    data = sets[1][1]
    config = TrialConfig(units=(512, 512), batch_size=256)
    tuner_epochs(config, data, 1, 0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tuner_epochs(config, data, 1, 0)
        times.append(time.perf_counter() - start)
    rate = training_flops(config, data) / min(times) / 1e9
    results.add(Row("loop", "2x512 MLP, batch 256: training FLOP rate / 1-thread matmul rate",
                    100 * rate / ceiling, "%", ">= 60%", rate / ceiling >= 0.6,
                    f"{rate:.1f} GFLOP/s vs matmul {ceiling:.1f} GFLOP/s"))

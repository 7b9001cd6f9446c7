"""The baseline users would write: Optuna's PyTorch example, adapted to digits.

Written the way the example does it (DataLoader over a TensorDataset, one model per trial, a
report and prune check per epoch, accuracy over the validation loader), with its space hard-coded
as a user would: `study` mirrors `benchmarks/study_space.yaml` (the study benchmarks), `default`
mirrors `search_spaces/digits_mlp.yaml` (the whole-command benchmark). With `track=True` it logs
to MLflow the common way: a nested run per trial, `log_params`, and `log_metric` per metric per
epoch.
"""

from __future__ import annotations

import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
# Where the two spaces differ: layers, units (log) and dropout ranges (None: no dropout).
SPACES: dict[str, dict[str, tuple[float, float] | None]] = {
    "study": {"layers": (1, 3), "units": (32, 256), "dropout": (0.0, 0.4)},
    "default": {"layers": (1, 2), "units": (32, 512), "dropout": None},
}


def define_model(trial: optuna.Trial, n_in: int, n_out: int,
                 space: str = "study") -> nn.Sequential:
    ranges = SPACES[space]
    low, high = ranges["layers"] or (1, 1)
    n_layers = trial.suggest_int("n_layers", int(low), int(high))
    layers: list[nn.Module] = []
    width = n_in
    low, high = ranges["units"] or (32, 32)
    units = [trial.suggest_int(f"units_{i}", int(low), int(high), log=True)
             for i in range(n_layers)]
    activation = trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
    drop = ranges["dropout"]
    dropout = trial.suggest_float("dropout", *drop) if drop is not None else 0.0
    for u in units:
        layers += [nn.Linear(width, u), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = u
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def make_objective(x_train, y_train, x_val, y_val, epochs: int, track: bool,
                   space: str = "study"):
    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(trial.number)
        model = define_model(trial, x_train.shape[1], int(y_train.max()) + 1, space)
        name = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
        if name == "sgd":
            momentum = trial.suggest_float("momentum", 0.5, 0.95)
            nesterov = trial.suggest_categorical("nesterov", [True, False])
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
        batch_size = trial.suggest_categorical("batch_size", [32, 64, 128])
        if name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                weight_decay=weight_decay)
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size,
                                  shuffle=True)
        val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=batch_size)
        run = None
        if track:
            import mlflow

            run = mlflow.start_run(run_name=f"trial-{trial.number}", nested=True)
            mlflow.log_params(trial.params)
        accuracy = 0.0
        try:
            for epoch in range(epochs):
                model.train()
                total = 0.0
                for data, target in train_loader:
                    optimizer.zero_grad()
                    loss = nn.functional.cross_entropy(model(data), target)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(target)
                model.eval()
                correct = 0
                with torch.no_grad():
                    for data, target in val_loader:
                        correct += model(data).argmax(dim=1).eq(target).sum().item()
                accuracy = correct / len(val_loader.dataset)
                if track:
                    mlflow.log_metric("train_loss", total / len(y_train), step=epoch)
                    mlflow.log_metric("val_accuracy", accuracy, step=epoch)
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return accuracy
        finally:
            if run is not None:
                mlflow.end_run()

    return objective


def run_plain(data, trials: int, epochs: int, seed: int, pruner: str, track: bool,
              tracking_uri: str | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {"none": optuna.pruners.NopPruner(),
               "median": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)}
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed),
                                pruner=pruners[pruner])
    objective = make_objective(data.train.x, data.train.y, data.val.x, data.val.y, epochs, track)
    if track:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("plain-optuna")
        with mlflow.start_run(run_name="study"):
            study.optimize(objective, n_trials=trials)
    else:
        study.optimize(objective, n_trials=trials)
    return study


def main(argv: list[str] | None = None) -> None:
    """The plain script as a user runs it: `python benchmarks/plain_optuna.py` (digits, the
    same 60/20/20 split and standardisation as tuner's default space, one torch thread)."""
    import argparse

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--pruner", default="median", choices=["none", "median"])
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", default="study", choices=sorted(SPACES))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = load_digits(return_X_y=True)
    rest, _test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    train, val = train_test_split(rest, test_size=0.25, random_state=0, stratify=y[rest])
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor((x[rows] - mean) / std, dtype=torch.float32),
                torch.tensor(y[rows], dtype=torch.int64))

    (x_train, y_train), (x_val, y_val) = tensors(train), tensors(val)
    pruners = {"none": optuna.pruners.NopPruner(),
               "median": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)}
    samplers = {"tpe": optuna.samplers.TPESampler(seed=args.seed),
                "random": optuna.samplers.RandomSampler(seed=args.seed)}
    study = optuna.create_study(direction="maximize", sampler=samplers[args.sampler],
                                pruner=pruners[args.pruner])
    study.optimize(make_objective(x_train, y_train, x_val, y_val, args.epochs, False,
                                  args.space),
                   n_trials=args.trials)
    print(f"best value {study.best_value:.4f} after {len(study.trials)} trials")


if __name__ == "__main__":
    main()

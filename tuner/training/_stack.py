"""Several MLPs as one stacked model: a leading trial dimension, one batched matmul per layer.

Slot k of every tensor holds trial k. Trials in one stack share their depth and (for batch norm)
their batch size; their widths may differ: each layer is as wide as its widest trial and a
narrower trial's extra units are padding, whose weights start at zero and get zero gradients, so
they stay exactly zero (a unit mask also zeroes them where an activation is not zero at zero).
Activations differ per trial too: slots are ordered by activation and each run of slots gets its
own. Each trial's optimizer step is torch's own fused kernel (Adam, AdamW, SGD; RMSprop's foreach
update) called on its slot with its own learning rate, momentum and weight decay, so an update is
computed exactly as the same trial's optimizer computes it alone.

`SlotState` is one trial's weights and optimizer state in its own (unpadded) shapes: what a
trial carries when the stack is rebuilt around it (trials join and leave between epochs), and
what becomes its model (`load_into`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tuner.space import TrialConfig
from tuner.training._grad import without_grad
from tuner.training._model import build_mlp

ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu,
    "leaky_relu": F.leaky_relu, "elu": F.elu, "selu": F.selu, "silu": F.silu,
}
_NONZERO_AT_ZERO = frozenset({"sigmoid"})
_BN_EPS, _BN_MOMENTUM = 1e-5, 0.1  # torch.nn.BatchNorm1d's defaults
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults
_RMS_ALPHA, _RMS_EPS = 0.99, 1e-8  # torch.optim.RMSprop's defaults
_STATES = {"adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
           "sgd": ("momentum_buffer",), "rmsprop": ("square_avg", "momentum_buffer")}


@dataclass
class SlotState:
    """One trial's tensors, unpadded. `params` in the order of its own MLP's parameters: per
    hidden layer W (in, out) [transposed from nn.Linear], b (out,), and with batch norm gamma,
    beta; then the output layer's W, b. `buffers`: batch norm's running mean and variance per
    layer. `opt`: each optimizer state aligned with `params`; `steps`: its step counts."""

    params: list[torch.Tensor]
    buffers: list[torch.Tensor] = field(default_factory=list)
    opt: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    steps: list[torch.Tensor] = field(default_factory=list)

    def clone(self) -> SlotState:
        return SlotState([t.clone() for t in self.params], [t.clone() for t in self.buffers],
                         {k: [t.clone() for t in v] for k, v in self.opt.items()},
                         [t.clone() for t in self.steps])

    @classmethod
    def initial(cls, config: TrialConfig, n_features: int, n_outputs: int, seed: int
                ) -> SlotState:
        """The weights `fit` starts from (`torch.manual_seed(seed)`, then the MLP is built),
        with zero optimizer state. Leaves the global generator where `fit` leaves it."""
        torch.manual_seed(seed)
        model = build_mlp(config, n_features, n_outputs)
        params: list[torch.Tensor] = []
        buffers: list[torch.Tensor] = []
        for module in model:
            if isinstance(module, nn.Linear):
                params += [module.weight.detach().t().contiguous(), module.bias.detach().clone()]
            elif isinstance(module, nn.BatchNorm1d):
                params += [module.weight.detach().clone(), module.bias.detach().clone()]
                buffers += [module.get_buffer("running_mean").clone(),
                            module.get_buffer("running_var").clone()]
        names = _STATES[config.optimizer]
        return cls(params, buffers, {n: [torch.zeros_like(p) for p in params] for n in names},
                   [torch.zeros((), dtype=torch.float32) for _ in params])

    def load_into(self, config: TrialConfig, n_features: int, n_outputs: int,
                  device: torch.device) -> nn.Sequential:
        """The trial's own MLP (as `build_mlp` makes it) holding these weights."""
        model = build_mlp(config, n_features, n_outputs).to(device)
        params, buffers = iter(self.params), iter(self.buffers)
        with torch.no_grad():
            for module in model:
                if isinstance(module, nn.Linear):
                    module.weight.copy_(next(params).t())
                    module.bias.copy_(next(params))
                elif isinstance(module, nn.BatchNorm1d):
                    module.weight.copy_(next(params))
                    module.bias.copy_(next(params))
                    module.get_buffer("running_mean").copy_(next(buffers))
                    module.get_buffer("running_var").copy_(next(buffers))
        return model


class Stack:
    """K trials of one depth as stacked tensors; slot order is the order of `configs`, which
    the caller sorts by activation (`order_slots`)."""

    def __init__(self, configs: Sequence[TrialConfig], states: Sequence[SlotState],
                 n_features: int, n_outputs: int, device: torch.device):
        self.configs = list(configs)
        self.k = len(configs)
        self.depth = len(configs[0].units)
        self.batch_norm = configs[0].batch_norm
        self.device = device
        self.widths = [max(c.units[layer] for c in configs) for layer in range(self.depth)]
        dims = [n_features, *self.widths, n_outputs]
        shapes = _layout(dims, self.batch_norm)
        self._matrix = [i % (4 if self.batch_norm else 2) == 0 for i in range(len(shapes))]
        self.params = [torch.zeros((self.k, *s), device=device) for s in shapes]
        self.buffers = [torch.zeros((self.k, 1, w), device=device)
                        for w in self.widths for _ in (0, 1)] if self.batch_norm else []
        names = sorted({n for c in configs for n in _STATES[c.optimizer]})
        self.opt = {n: [torch.zeros_like(p) for p in self.params] for n in names}
        self.steps = torch.zeros((self.k, len(shapes)), dtype=torch.float32, device=device)
        for k, state in enumerate(states):
            self._put(k, state)
        for p in self.params:
            p.requires_grad_(True)
            # Gradients live as long as the stack: backward adds into them in place, so each
            # slot's views (for its optimizer step) are made once.
            p.grad = torch.zeros_like(p)
        self._views = [_SlotViews(self, k) for k in range(self.k)]
        # Unit masks: 1 for a trial's units, 0 for its padding (needed where act(0) != 0).
        self.unit_masks = [torch.zeros((self.k, 1, w), device=device) for w in self.widths]
        for k, c in enumerate(configs):
            for layer, units in enumerate(c.units):
                self.unit_masks[layer][k, 0, :units] = 1.0
        padded = any(c.units[layer] < w for c in configs for layer, w in enumerate(self.widths))
        self.mask_units = padded and any(c.activation in _NONZERO_AT_ZERO for c in configs)
        self.runs = _runs([c.activation for c in configs])

    # --- moving trials in and out ---------------------------------------------------------

    def _put(self, k: int, state: SlotState) -> None:
        extents = self._extents(k)
        with torch.no_grad():
            for p, extent, value in zip(self.params, extents, state.params, strict=True):
                p[k, :extent[0], :extent[1]].copy_(value.reshape(extent))
            for name, values in state.opt.items():
                for t, extent, value in zip(self.opt[name], extents, values, strict=True):
                    t[k, :extent[0], :extent[1]].copy_(value.reshape(extent))
            for buf, units, value in zip(self.buffers, self._buffer_units(k), state.buffers,
                                         strict=True):
                buf[k, 0, :units].copy_(value)
            if state.steps:
                self.steps[k].copy_(torch.stack(state.steps))

    def take(self, k: int) -> SlotState:
        """Trial k's tensors, unpadded copies (its weights, buffers, optimizer state)."""
        extents = self._extents(k)

        def cut(t: torch.Tensor, extent: tuple[int, int], matrix: bool) -> torch.Tensor:
            piece = t[k, :extent[0], :extent[1]].detach()
            return (piece if matrix else piece.reshape(-1)).clone()

        def cut_all(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [cut(t, e, m) for t, e, m in zip(tensors, extents, self._matrix, strict=True)]

        buffers = [buf[k, 0, :units].detach().clone()
                   for buf, units in zip(self.buffers, self._buffer_units(k), strict=True)]
        opt = {name: cut_all(self.opt[name]) for name in _STATES[self.configs[k].optimizer]}
        return SlotState(cut_all(self.params), buffers, opt,
                         [s.clone() for s in self.steps[k].unbind()])

    def _extents(self, k: int) -> list[tuple[int, int]]:
        """Per stacked tensor, trial k's unpadded (rows, columns)."""
        dims = [self.params[0].shape[1], *self.configs[k].units, self.params[-1].shape[2]]
        return _layout(dims, self.batch_norm)

    def _buffer_units(self, k: int) -> list[int]:
        return [u for u in self.configs[k].units for _ in (0, 1)] if self.batch_norm else []

    # --- computing ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor | None] = ()
                ) -> torch.Tensor:
        """Training forward pass: x (K, B, features) -> (K, B, outputs). `masks[layer]`
        (K, B, width) multiplies a hidden layer's output (dropout noise and unit masks)."""
        h = x
        per_layer = 4 if self.batch_norm else 2
        for layer in range(self.depth):
            w, b = self.params[per_layer * layer], self.params[per_layer * layer + 1]
            z = torch.baddbmm(b, h, w)
            if self.batch_norm:
                z = self._batch_norm(z, layer, training=True)
            h = self.activate(z)
            mask = masks[layer] if layer < len(masks) else None
            if mask is not None:
                h = h * mask
            elif self.mask_units:
                h = h * self.unit_masks[layer]
        return torch.baddbmm(self.params[-1], h, self.params[-2])

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, rows: int = 8192) -> torch.Tensor:
        """Evaluation forward pass of every trial on shared rows x (N, features): (K, N, out)."""
        outs = []
        per_layer = 4 if self.batch_norm else 2
        chunk = max(1, rows // max(1, self.k))
        for start in range(0, x.shape[0], chunk):
            xs = x[start:start + chunk]
            w0 = self.params[0]
            # One matmul for the first layer of every trial: (N, F) @ (F, K * W).
            h = (xs @ w0.permute(1, 0, 2).reshape(w0.shape[1], -1)).view(
                xs.shape[0], self.k, -1).transpose(0, 1) + self.params[1]
            for layer in range(self.depth):
                if layer:
                    w, b = self.params[per_layer * layer], self.params[per_layer * layer + 1]
                    h = torch.baddbmm(b, h, w)
                if self.batch_norm:
                    h = self._batch_norm(h, layer, training=False)
                h = self.activate(h)
                if self.mask_units:
                    h = h * self.unit_masks[layer]
            outs.append(torch.baddbmm(self.params[-1], h, self.params[-2]))
        return torch.cat(outs, dim=1) if outs else torch.empty(self.k, 0, 0)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.runs) == 1:
            return ACTIVATION_FNS[self.runs[0][0]](z)
        return torch.cat([ACTIVATION_FNS[name](z[a:b]) for name, a, b in self.runs])

    def _batch_norm(self, z: torch.Tensor, layer: int, training: bool) -> torch.Tensor:
        gamma, beta = self.params[4 * layer + 2], self.params[4 * layer + 3]
        running_mean, running_var = self.buffers[2 * layer], self.buffers[2 * layer + 1]
        if not training:
            return (z - running_mean) * torch.rsqrt(running_var + _BN_EPS) * gamma + beta
        mean = z.mean(dim=1, keepdim=True)
        var = z.var(dim=1, unbiased=False, keepdim=True)
        with torch.no_grad():
            n = z.shape[1]
            running_mean.mul_(1 - _BN_MOMENTUM).add_(mean.detach() * _BN_MOMENTUM)
            unbiased = var.detach() * (n / max(n - 1, 1))
            running_var.mul_(1 - _BN_MOMENTUM).add_(unbiased * _BN_MOMENTUM)
        return (z - mean) * torch.rsqrt(var + _BN_EPS) * gamma + beta

    # --- optimizer ------------------------------------------------------------------------

    @without_grad
    def step(self, k: int, lr: float, first: bool) -> None:
        """Trial k's optimizer step with learning rate `lr`, as its own optimizer takes it
        (`first`: its first step, when SGD's momentum buffer starts as the gradient)."""
        config, views = self.configs[k], self._views[k]
        if config.optimizer in ("adam", "adamw"):
            self.steps[k].add_(1)
            fused = torch._fused_adamw_ if config.optimizer == "adamw" else torch._fused_adam_
            fused(views.params, views.grads, views.opt["exp_avg"], views.opt["exp_avg_sq"], [],
                  views.steps, amsgrad=False, lr=lr, beta1=_ADAM_BETAS[0],
                  beta2=_ADAM_BETAS[1], weight_decay=config.weight_decay, eps=_ADAM_EPS,
                  maximize=False, grad_scale=None, found_inf=None)
        elif config.optimizer == "sgd":
            momentum = config.momentum
            torch._fused_sgd_(views.params, views.grads,
                              views.opt["momentum_buffer"] if momentum else [],
                              weight_decay=config.weight_decay, momentum=momentum, lr=lr,
                              dampening=0.0, nesterov=config.nesterov and momentum > 0,
                              maximize=False, is_first_step=first and momentum > 0,
                              grad_scale=None, found_inf=None)
        else:
            self.steps[k].add_(1)
            _rmsprop(views.params, views.grads, views.opt["square_avg"],
                     views.opt["momentum_buffer"], lr, config.momentum, config.weight_decay)

    @without_grad
    def zero_grad(self, slots: Sequence[int] | None = None) -> None:
        """Zero the gradients of every slot (None) or of some slots."""
        grads = [p.grad for p in self.params if p.grad is not None] if slots is None else \
            [g for k in slots for g in self._views[k].grads]
        if grads:
            torch._foreach_zero_(grads)


class _SlotViews:
    """Views of one slot of every stacked tensor, made once per stack."""

    def __init__(self, stack: Stack, k: int):
        self.params = [p[k] for p in stack.params]
        self.grads = [p.grad[k] for p in stack.params if p.grad is not None]
        self.opt = {name: [t[k] for t in tensors] for name, tensors in stack.opt.items()}
        self.steps = list(stack.steps[k].unbind())


def _rmsprop(params: list[torch.Tensor], grads: list[torch.Tensor],
             square_avgs: list[torch.Tensor], buffers: list[torch.Tensor], lr: float,
             momentum: float, weight_decay: float) -> None:
    """torch.optim.RMSprop's foreach update (alpha 0.99, eps 1e-8, not centered)."""
    if weight_decay != 0:
        grads = list(torch._foreach_add(grads, params, alpha=weight_decay))
    torch._foreach_mul_(square_avgs, _RMS_ALPHA)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - _RMS_ALPHA)
    avg = torch._foreach_sqrt(square_avgs)
    torch._foreach_add_(avg, _RMS_EPS)
    if momentum > 0:
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_addcdiv_(buffers, grads, avg)
        torch._foreach_add_(params, buffers, alpha=-lr)
    else:
        torch._foreach_addcdiv_(params, grads, avg, value=-lr)


def _layout(dims: list[int], batch_norm: bool) -> list[tuple[int, int]]:
    """Shapes of one trial's parameters in stack order, vectors as (1, n): per hidden layer W,
    b (and gamma, beta), then the output layer's W, b."""
    shapes: list[tuple[int, int]] = []
    for layer in range(len(dims) - 1):
        shapes += [(dims[layer], dims[layer + 1]), (1, dims[layer + 1])]
        if batch_norm and layer < len(dims) - 2:
            shapes += [(1, dims[layer + 1]), (1, dims[layer + 1])]
    return shapes


def _runs(names: list[str]) -> list[tuple[str, int, int]]:
    """Runs of equal activations in slot order: (name, first slot, end)."""
    runs: list[tuple[str, int, int]] = []
    for k, name in enumerate(names):
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], k + 1)
        else:
            runs.append((name, k, k + 1))
    return runs


def order_slots(configs: Sequence[TrialConfig]) -> list[int]:
    """Indices of `configs` in slot order: grouped by activation (one run per activation)."""
    return sorted(range(len(configs)), key=lambda i: configs[i].activation)

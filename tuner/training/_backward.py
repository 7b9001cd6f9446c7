"""A training step's forward and backward passes written out for a stack without batch norm:
each layer's gradient by the kernels autograd's backward would call (`threshold_backward` for
ReLU, `bmm` for a batched matmul, ...), added to the parameters' `.grad` (the weights' by one
fused `baddbmm_`), without recording a graph. A step of a small MLP is bound by the framework's
fixed cost per operation, and autograd's engine and graph were a third of it (a step of three
trials, layers of 128 and 64, batch 32, one core: 312 us with autograd, 219 us written out).

The graph-recording path stays for batch norm and for anything not listed here;
`tests/test_packs.py` checks that both paths give the same gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from tuner.training._grad import without_grad
from tuner.training._stack import Stack

if TYPE_CHECKING:
    from tuner.training._fit import RowLoss

_aten = torch.ops.aten
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

# d(activation)/dz times the incoming gradient, from (gradient, z, activation(z)), as
# torch's derivatives.yaml defines each activation's backward.
_ACTIVATION_GRADS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                      torch.Tensor]] = {
    "relu": lambda g, z, a: _aten.threshold_backward(g, a, 0),
    "tanh": lambda g, z, a: _aten.tanh_backward(g, a),
    "sigmoid": lambda g, z, a: _aten.sigmoid_backward(g, a),
    "gelu": lambda g, z, a: _aten.gelu_backward(g, z),
    "leaky_relu": lambda g, z, a: _aten.leaky_relu_backward(g, z, 0.01, False),
    "elu": lambda g, z, a: _aten.elu_backward(g, 1.0, 1.0, 1.0, False, z),
    "selu": lambda g, z, a: _aten.elu_backward(g, _SELU_ALPHA, _SELU_SCALE, 1.0, False, z),
    "silu": lambda g, z, a: _aten.silu_backward(g, z),
}


def written_out(stack: Stack) -> bool:
    """Whether `forward_backward` covers the stack: no batch norm, known activations."""
    return not stack.batch_norm and all(name in _ACTIVATION_GRADS for name, _, _ in stack.runs)


@without_grad
def forward_backward(stack: Stack, x: torch.Tensor, masks: Sequence[torch.Tensor | None],
                     loss: RowLoss, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`stack.forward(x, masks)`, the rows' losses against `target`, and the gradient of
    `sum(scale * rows' losses)` added to every parameter's `.grad`; the rows' losses."""
    params = stack.params
    inputs, pre, post, applied = [], [], [], []
    h = x
    for layer in range(stack.depth):
        z = torch.baddbmm(params[2 * layer + 1], h, params[2 * layer])
        a = stack.activate(z)
        mask = masks[layer] if layer < len(masks) else None
        if mask is None and stack.mask_units:
            mask = stack.unit_masks[layer]
        inputs.append(h)
        pre.append(z)
        post.append(a)
        applied.append(mask)
        h = a * mask if mask is not None else a
    out = torch.baddbmm(params[-1], h, params[-2])
    rows, grad = loss.value_and_grad(out, target, scale)
    inputs.append(h)
    for layer in reversed(range(stack.depth + 1)):
        w, b = params[2 * layer], params[2 * layer + 1]
        assert w.grad is not None and b.grad is not None
        if layer < stack.depth:  # back through the activation (and mask) of this layer
            mask = applied[layer]
            if mask is not None:
                grad = grad * mask
            grad = _activation_grad(stack, grad, pre[layer], post[layer])
        w.grad.baddbmm_(inputs[layer].transpose(1, 2), grad)
        b.grad.add_(grad.sum(dim=1, keepdim=True))
        if layer:
            grad = torch.bmm(grad, w.transpose(1, 2))
    return rows


def _activation_grad(stack: Stack, grad: torch.Tensor, z: torch.Tensor, a: torch.Tensor
                     ) -> torch.Tensor:
    if len(stack.runs) == 1:
        return _ACTIVATION_GRADS[stack.runs[0][0]](grad, z, a)
    return torch.cat([_ACTIVATION_GRADS[name](grad[i:j], z[i:j], a[i:j])
                      for name, i, j in stack.runs])

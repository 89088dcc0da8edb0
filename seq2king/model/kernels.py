"""CPU kernels the model uses where PyTorch's own are slow on a CPU: dropout's mask and tanh.

Both are exact stand-ins (dropout's keep probability rounded to 1/65536; tanh within
2.4e-7 of ``torch.tanh``, tests check both and their gradients); their speed against
PyTorch's is in docs/speed.md. On CUDA and in eval mode they are PyTorch's own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


class _Dropped(torch.autograd.Function):
    """``x * keep * scale`` for a 0/1 ``keep`` of bytes: saves the bytes, not a float mask or ``x``."""

    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask on the CPU.

    On the CPU, ``torch.bernoulli_`` draws one random number at a time (its cost is in
    docs/speed.md). Here one 64-bit word (numpy's SFC64, seeded from torch's generator)
    gives four 16-bit uniforms, and an element is kept when its uniform is at or above
    ``p``'s threshold: the keep probability is ``p`` rounded to 1/65536. The mask
    multiplies as bytes (``uint8``): a boolean operand would be converted to float inside
    the product, in the forward and again in the backward.
    Elsewhere (CUDA) and in eval mode, plain dropout. :meth:`add` is the residual
    ``x + dropout(a)``.
    """

    def _keep(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return None
        n = x.numel()
        # seeded from torch's generator, so torch.manual_seed / seed_everything still fix the masks
        seed = int(torch.randint(0, 2**63 - 1, (1,)))
        bits = torch.from_numpy(np.random.SFC64(seed).random_raw((n + 3) // 4).view(np.int64))
        return bits.view(torch.int16)[:n].view(x.shape) >= int(round(self.p * 65536)) - 32768

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self._keep(x)
        if keep is None:
            return super().forward(x)
        return _Dropped.apply(x, keep.view(torch.uint8), 1.0 / (1.0 - self.p))

    def add(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``x + dropout(a)``."""
        return x + self(a)


class _SigmoidTanh(torch.autograd.Function):
    """``tanh(x)`` as ``2 sigmoid(2x) - 1``; the backward from the output, as torch's own."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x * 2).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """``nn.Tanh``, computed on the CPU as ``2 sigmoid(2x) - 1``.

    The CPU's ``torch.tanh`` (accurate to 1 ulp) is several times slower than
    ``torch.sigmoid`` (docs/speed.md). The identity holds exactly; in float32 the
    sigmoid form is within 2.4e-7 of ``torch.tanh`` (absolute; tests check it, and its
    gradient).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SigmoidTanh.apply(x) if x.device.type == "cpu" else torch.tanh(x)

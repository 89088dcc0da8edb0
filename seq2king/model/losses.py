"""The training losses: the pair MSE every head is trained with, and the attention head's row-wise KL."""

from __future__ import annotations

import torch


def masked_pair_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of the per-sequence MSE over off-diagonal real pairs.

    ``pred`` is (B, n, n), or (B, H, n, n) with one prediction per head (then the
    mean over heads of each head's error).
    """
    n = mask.shape[1]
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=mask.device)
    if pred.dim() == 4:
        target, pairs = target[:, None], pairs[:, None]
    err = (pred - target).square().masked_fill(~pairs, 0.0)
    dims = tuple(range(1, err.dim()))
    per_seq = err.sum(dim=dims) / (pairs.sum(dim=dims) * (pred.shape[1] if pred.dim() == 4 else 1)).clamp_min(1)
    return per_seq.mean()


def attention_kl(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 temperature: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise KL(softmax(target / T_h) || softmax(pred_h / T_h)) over the other real tokens.

    ``pred`` (B, H, n, n) per-head predictions, ``target`` (B, n, n), ``temperature`` (H,).
    With the attention head, ``pred_h / T_h`` is head h's attention logits up to a
    constant per row, so this compares each head's attention (self excluded) with the
    target's softmax at the same temperature: it weighs the top of each row, the
    people attention goes to, where the pair MSE weighs every pair alike. Mean over
    rows, then sequences and heads.
    """
    n = mask.shape[1]
    pairs = (mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=mask.device))[:, None]
    tau = temperature.view(1, -1, 1, 1)
    low = -1e9  # not -inf: a padding row would give NaN
    lp = (pred / tau).masked_fill(~pairs, low).log_softmax(-1)
    lt = (target[:, None] / tau).masked_fill(~pairs, low).log_softmax(-1)
    kl = (lt.exp() * (lt - lp)).masked_fill(~pairs, 0.0).sum(-1)  # (B, H, n)
    rows = (mask & (mask.sum(1, keepdim=True) > 1))[:, None]
    per_seq = kl.masked_fill(~rows, 0.0).sum(-1) / rows.sum(-1).clamp_min(1)  # (B, H)
    if weight is not None:
        per_seq = per_seq * weight
    return per_seq.mean()

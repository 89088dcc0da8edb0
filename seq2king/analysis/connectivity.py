"""Attention connectivity between groups, with chance, lift and permutation p-values.

Vocabulary (DESIGN.md): the *intra share* of group g in an attention matrix is
the attention mass from members of g to other members of g divided by their
mass to all other tokens (self excluded). *Chance* is the same share under
uniform attention over the other tokens of the sequence; *lift* = share /
chance. Shares are summed over sequences (numerators and denominators apart)
and averaged over groups ("macro"). The p-value shuffles labels across people
and asks how often the macro lift is as high as observed.

Inversion schemes turn attention into "relatedness" differently:

- ``none``: the attention weights themselves;
- ``complement``: 1 - a with self excluded, renormalised per row;
- ``negate``: softmax of the negated pre-softmax scores.

Everything works on stacks of matrices ``(m, n, n)`` (layers x heads x schemes
flattened) so that one batched product serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SCHEMES = ("none", "complement", "negate")


def apply_scheme(weights: torch.Tensor, scores: torch.Tensor, scheme: str) -> torch.Tensor:
    """``(..., n, n)`` attention -> the matrix a scheme reads (rows sum to 1 over others)."""
    n = weights.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=weights.device)
    if scheme == "none":
        return weights
    if scheme == "complement":
        a = (1 - weights).masked_fill(eye, 0.0)
        return a / a.sum(-1, keepdim=True).clamp_min(1e-30)
    if scheme == "negate":
        return (-scores).masked_fill(eye, float("-inf")).softmax(-1)
    raise ValueError(f"unknown inversion scheme {scheme!r}; choose from {SCHEMES}")


def off_diagonal(a: torch.Tensor) -> torch.Tensor:
    n = a.shape[-1]
    return a.masked_fill(torch.eye(n, dtype=torch.bool, device=a.device), 0.0)


@dataclass
class Masses:
    """Summed attention masses, per matrix and group; add them over sequences."""

    intra: np.ndarray  # (m, g)
    total: np.ndarray  # (m, g)
    chance_num: np.ndarray  # (g,)
    chance_den: np.ndarray  # (g,)

    def __add__(self, other: "Masses") -> "Masses":
        return Masses(self.intra + other.intra, self.total + other.total,
                      self.chance_num + other.chance_num, self.chance_den + other.chance_den)

    def shares(self) -> np.ndarray:
        return self.intra / np.where(self.total > 0, self.total, np.nan)

    def chance(self) -> np.ndarray:
        return self.chance_num / np.where(self.chance_den > 0, self.chance_den, np.nan)

    def macro_share(self) -> np.ndarray:
        return np.nanmean(self.shares(), axis=1)

    def macro_chance(self) -> float:
        return float(np.nanmean(self.chance()))

    def macro_lift(self) -> np.ndarray:
        return np.nanmean(self.shares() / self.chance()[None, :], axis=1)


def _chance_mass(size: torch.Tensor, n: int) -> torch.Tensor:
    """Own-group mass of a group of ``size`` under uniform attention over the other n - 1."""
    return size * (size - 1) / max(n - 1, 1)


def masses(a: torch.Tensor, labels: torch.Tensor, n_groups: int) -> Masses:
    """Masses of one sequence: ``a`` (m, n, n) attention, ``labels`` (n,) group ids."""
    a0 = off_diagonal(a.double())
    y = torch.nn.functional.one_hot(labels, n_groups).double()  # (n, g)
    intra = torch.einsum("mij,ig,jg->mg", a0, y, y)
    total = a0.sum(-1) @ y  # (m, g)
    n = len(labels)
    size = y.sum(0)
    chance_num = _chance_mass(size, n)
    return Masses(intra.cpu().numpy(), total.cpu().numpy(), chance_num.cpu().numpy(), size.cpu().numpy())


def permutation_lifts(seqs: list[tuple[torch.Tensor, torch.Tensor]], labels: torch.Tensor, n_groups: int,
                      n_perm: int, seed: int, chunk: int = 64, per_group: bool = False):
    """Macro lift of every matrix under ``n_perm`` label shuffles: ``(n_perm, m)``.

    With ``per_group`` also each group's lift: ``(n_perm, m, g)`` as a second value.

    ``seqs`` holds ``(a (m, n, n), members (n,) positions into labels)``. The same
    shuffle of all people is applied to every sequence, as one permutation of
    the analysed set should be.
    """
    g = torch.Generator().manual_seed(seed)
    n_people = len(labels)
    out, groups_out = [], []
    prepared = [(off_diagonal(a.float()), members) for a, members in seqs]
    for start in range(0, n_perm, chunk):
        p = min(chunk, n_perm - start)
        perms = torch.stack([torch.randperm(n_people, generator=g) for _ in range(p)])
        shuffled = labels[perms]  # (p, n_people)
        m = prepared[0][0].shape[0]
        intra = torch.zeros(p, m, n_groups, dtype=torch.float64)
        total = torch.zeros(p, m, n_groups, dtype=torch.float64)
        cnum = torch.zeros(p, n_groups, dtype=torch.float64)
        cden = torch.zeros(p, n_groups, dtype=torch.float64)
        for a0, members in prepared:
            y = torch.nn.functional.one_hot(shuffled[:, members], n_groups).float()  # (p, n, g)
            z = torch.einsum("mij,pjg->pmig", a0, y)
            intra += (z * y[:, None]).sum(2).double()
            total += torch.einsum("mi,pig->pmg", a0.sum(-1), y).double()
            size = y.sum(1).double()
            cnum += _chance_mass(size, len(members))
            cden += size
        share = intra / torch.where(total > 0, total, torch.nan)
        chance = cnum / torch.where(cden > 0, cden, torch.nan)
        lift = share / chance[:, None, :]
        out.append(torch.nanmean(lift, dim=2).numpy())
        groups_out.append(lift.numpy())
    if per_group:
        return np.concatenate(out, axis=0), np.concatenate(groups_out, axis=0)
    return np.concatenate(out, axis=0)


def p_values(observed: np.ndarray, permuted: np.ndarray) -> np.ndarray:
    """One-sided permutation p-values: (1 + #{perm >= obs}) / (1 + n_perm), per entry of ``observed``."""
    return (1 + (permuted >= observed[None] - 1e-12).sum(0)) / (1 + len(permuted))


def row_entropy(a: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of rows of ``(..., n, n)`` with self excluded and rows renormalised."""
    a0 = off_diagonal(a.double())
    a0 = a0 / a0.sum(-1, keepdim=True).clamp_min(1e-300)
    h = -(a0 * torch.log(a0.clamp_min(1e-300))).sum(-1)
    return h.mean()


def softmax_king(king: torch.Tensor, temperature: float) -> torch.Tensor:
    """Parameter-free attention: softmax over others of KING / T, ``(n, n)``."""
    n = king.shape[-1]
    eye = torch.eye(n, dtype=torch.bool)
    return (king.double() / temperature).masked_fill(eye, float("-inf")).softmax(-1)


def match_temperature(kings: list[torch.Tensor], target_entropy: float, lo: float = 1e-5,
                      hi: float = 1e3, iters: int = 80) -> float:
    """Temperature at which softmax-KING has the given mean row entropy (bisection in log T).

    Entropy rises with temperature, from ~0 (argmax) to log(n - 1) (uniform).
    """
    def ent(t):
        return float(torch.stack([row_entropy(softmax_king(k, t)) for k in kings]).mean())

    a, b = np.log(lo), np.log(hi)
    for _ in range(iters):
        mid = (a + b) / 2
        if ent(float(np.exp(mid))) < target_entropy:
            a = mid
        else:
            b = mid
    return float(np.exp((a + b) / 2))


def top1_share(a: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of people whose most-attended other person is in their own group."""
    n = a.shape[-1]
    best = a.double().masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).argmax(-1)
    return float((labels[best] == labels).double().mean())

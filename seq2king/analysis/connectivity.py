"""Attention connectivity between groups, with chance, lift and permutation p-values.

Vocabulary (DESIGN.md): the *intra share* of group g in an attention matrix is
the attention mass from members of g to other members of g divided by their
mass to all other tokens (self excluded). *Chance* is the same share under
uniform attention over the other tokens of the sequence. Masses are summed over
sequences (numerators and denominators apart), per group.

Two summaries over groups, each with one name:

- ``intra_share`` (macro): the mean over groups of the groups' intra shares;
  ``chance`` likewise the mean over groups of their chance shares;
- ``lift``: the mean over groups of each group's ``share / chance``. This is
  *not* ``intra_share / chance`` (a ratio of means); small groups, whose chance
  is low, weigh more in the lift.

Everything starts from *per-person* masses (:class:`PersonMasses`): each
analysed person's attention mass to their own group, to everyone, and their
chance mass, summed over the sequences they appear in. Group figures, the label
shuffles of the permutation test and the bootstrap over people are all sums of
those, computed in float64 by one function (:func:`person_masses`) for the
observed labels and for every shuffle alike.

Inversion schemes turn attention into "relatedness" differently:

- ``none``: the attention weights themselves;
- ``complement``: 1 - a with self excluded, renormalised per row;
- ``negate``: softmax of the negated pre-softmax scores.

Matrices come in stacks ``(m, n, n)`` (schemes x layers x heads flattened) so
one batched product serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SCHEMES = ("none", "complement", "negate")
REL_TOL = 1e-9  # ties in the permutation test: a shuffle within this relative distance counts as >=


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
    """Summed attention masses, per matrix and group."""

    intra: np.ndarray  # (..., m, g)
    total: np.ndarray  # (..., m, g)
    chance_num: np.ndarray  # (..., g)
    chance_den: np.ndarray  # (..., g)

    def shares(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.intra / np.where(self.total > 0, self.total, np.nan)

    def chance(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.chance_num / np.where(self.chance_den > 0, self.chance_den, np.nan)

    def lifts(self) -> np.ndarray:
        """Each group's share / chance, ``(..., m, g)``."""
        return self.shares() / self.chance()[..., None, :]

    def macro_share(self) -> np.ndarray:
        return nanmean(self.shares(), -1)

    def macro_chance(self):
        c = nanmean(self.chance(), -1)
        return float(c) if np.ndim(c) == 0 else c

    def macro_lift(self) -> np.ndarray:
        return nanmean(self.lifts(), -1)


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        return np.where(ok, x, 0.0).sum(axis) / np.where(ok.any(axis), ok.sum(axis), np.nan)


@dataclass
class PersonMasses:
    """Per-person masses over the analysed people ``0..N-1``, summed over sequences.

    ``intra`` (p, m, N): attention mass to others of the same group, under each of
    ``p`` labellings (p = 1: the observed labels); ``total`` (m, N): mass to all
    others; ``chance`` (p, N): own-group mass under uniform attention;
    ``count`` (N,): sequences the person appeared in.
    """

    intra: np.ndarray
    total: np.ndarray
    chance: np.ndarray
    count: np.ndarray

    def groups(self, labels: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> Masses:
        """Group masses for ``labels`` ((p, N) group ids, one row per labelling) and
        optional per-person ``weights`` ((b, N) bootstrap multiplicities; then p must be 1).

        Returns arrays with a leading axis of p (or b).
        """
        y = np.eye(n_groups)[labels]  # (p, N, g)
        if weights is None:
            intra = np.einsum("pmn,png->pmg", self.intra, y)
            total = np.einsum("mn,png->pmg", self.total, y)
            cnum = np.einsum("pn,png->pg", self.chance, y)
            cden = np.einsum("n,png->pg", self.count, y)
        else:
            assert labels.shape[0] == 1 and self.intra.shape[0] == 1
            yw = weights[:, :, None] * y[0][None]  # (b, N, g)
            intra = np.einsum("mn,bng->bmg", self.intra[0], yw)
            total = np.einsum("mn,bng->bmg", self.total, yw)
            cnum = np.einsum("n,bng->bg", self.chance[0], yw)
            cden = np.einsum("n,bng->bg", self.count, yw)
        return Masses(intra, total, cnum, cden)

    def select(self, i: int) -> "PersonMasses":
        """Only matrix ``i`` of the stack."""
        return PersonMasses(self.intra[:, i:i + 1], self.total[i:i + 1], self.chance, self.count)


def person_masses(seqs: list[tuple[torch.Tensor, np.ndarray]], labels: np.ndarray, n_groups: int,
                  n_people: int) -> PersonMasses:
    """Per-person masses of a stack of matrices under one or several labellings.

    ``seqs`` holds ``(a (m, n, n), members (n,) positions 0..N-1 into the analysed people)``;
    ``labels`` is ``(p, N)`` group ids (one row per labelling: the observed labels, or
    shuffles of them), so the observed figures and every shuffle go through this same
    float64 code.
    """
    labels = torch.as_tensor(np.atleast_2d(labels), dtype=torch.long)
    p = labels.shape[0]
    m = seqs[0][0].shape[0]
    intra = torch.zeros(p, m, n_people, dtype=torch.float64)
    total = torch.zeros(m, n_people, dtype=torch.float64)
    chance = torch.zeros(p, n_people, dtype=torch.float64)
    count = torch.zeros(n_people, dtype=torch.float64)
    for a, members in seqs:
        idx = torch.as_tensor(np.asarray(members), dtype=torch.long)
        a0 = off_diagonal(a.double())
        y = torch.nn.functional.one_hot(labels[:, idx], n_groups).double()  # (p, n, g)
        z = torch.einsum("mij,pjg->pmig", a0, y)  # mass from i to each group
        intra.index_add_(2, idx, (z * y[:, None]).sum(-1))
        total.index_add_(1, idx, a0.sum(-1))
        size = y.sum(1)  # (p, g)
        n = len(idx)
        own = (y * (size[:, None, :] - 1)).sum(-1) / max(n - 1, 1)  # (p, n): (|g(i)| - 1) / (n - 1)
        chance.index_add_(1, idx, own)
        count.index_add_(0, idx, torch.ones(n, dtype=torch.float64))
    return PersonMasses(intra.numpy(), total.numpy(), chance.numpy(), count.numpy())


def masses(a: torch.Tensor, labels, n_groups: int) -> Masses:
    """Group masses of one sequence: ``a`` (m, n, n) attention, ``labels`` (n,) group ids."""
    lab = np.asarray(labels)[None]
    g = person_masses([(a, np.arange(lab.shape[1]))], lab, n_groups, lab.shape[1]).groups(lab, n_groups)
    return Masses(g.intra[0], g.total[0], g.chance_num[0], g.chance_den[0])


def permuted_lifts(seqs, labels_perm: np.ndarray, n_groups: int, n_people: int,
                   budget: float = 3e7) -> np.ndarray:
    """Each group's lift under each labelling in ``labels_perm`` ((p, N)): ``(p, m, g)``.

    Chunked so that one chunk's ``(chunk, m, n, g)`` product stays within ``budget`` numbers.
    """
    if len(labels_perm) == 0:
        return np.zeros((0, seqs[0][0].shape[0], n_groups))
    m, n = seqs[0][0].shape[0], max(len(x) for _, x in seqs)
    chunk = max(1, int(budget // (m * n * n_groups)))
    out = []
    for start in range(0, len(labels_perm), chunk):
        lab = labels_perm[start:start + chunk]
        out.append(person_masses(seqs, lab, n_groups, n_people).groups(lab, n_groups).lifts())
    return np.concatenate(out, axis=0)


def p_values(observed: np.ndarray, permuted: np.ndarray, rel_tol: float = REL_TOL) -> np.ndarray:
    """One-sided permutation p-values, ``(1 + #{perm >= obs}) / (1 + n_perm)`` per entry.

    A shuffle within ``rel_tol`` (relative) of the observed value counts as a tie,
    i.e. as ``>=``: equal statistics computed along different summation orders
    differ in the last bits.
    """
    obs = np.asarray(observed)[None]
    tol = rel_tol * np.maximum(1.0, np.abs(obs))
    hits = (permuted >= obs - tol) & np.isfinite(permuted)
    return (1 + hits.sum(0)) / (1 + len(permuted))


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


def match_temperature(kings: list[torch.Tensor], target_entropy: float, lo: float = 1e-6,
                      hi: float = 1e3) -> float:
    """Temperature at which softmax-KING has the given mean row entropy (scipy ``brentq`` in log T).

    Entropy rises with temperature, from ~0 (argmax) to log(n - 1) (uniform); a target
    outside that range gets the nearer end.
    """
    from scipy.optimize import brentq

    def gap(log_t):
        t = float(np.exp(log_t))
        return float(torch.stack([row_entropy(softmax_king(k, t)) for k in kings]).mean()) - target_entropy

    a, b = np.log(lo), np.log(hi)
    ga, gb = gap(a), gap(b)
    if ga >= 0:
        return lo
    if gb <= 0:
        return hi
    return float(np.exp(brentq(gap, a, b, xtol=1e-12, rtol=1e-12)))


def top1_hits(a: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """Per row of ``(m, n, n)`` (or ``(n, n)``): is the most-attended other person in the row's group?"""
    a = a if a.dim() == 3 else a[None]
    n = a.shape[-1]
    best = a.double().masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).argmax(-1).numpy()
    return labels[best] == labels[None, :]


def top1_share(a: torch.Tensor, labels) -> float:
    """Share of people whose most-attended other person is in their own group."""
    return float(top1_hits(a, np.asarray(labels)).mean())

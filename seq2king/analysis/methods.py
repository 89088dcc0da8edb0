"""Every method side by side: each yields attention-like matrices or an embedding per person.

Matrix methods (:data:`MATRIX_METHODS`) give an :class:`Extracted` stack over
sequences of people: the trained model (every layer x head x scheme), the same
architecture untrained, and softmax over KING at a given temperature. Embedding
methods (:data:`EMBEDDING_METHODS`) give one row per analysed person: the
model's embeddings and the peers users would reach for (KING rows, PCA of KING,
genotype PCA fitted on training people). :func:`score_matrices` and
:func:`score_embedding` score every method the same way.

Adding a method is one function added to one of the two registries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from seq2king.analysis.attention import Extracted, extract
from seq2king.analysis.connectivity import (PersonMasses, _nanmean, p_values, permuted_lifts, person_masses,
                                            softmax_king, top1_hits)

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the methods draw on: the networks, the data and the analysed people."""

    net: torch.nn.Module
    untrained: torch.nn.Module
    datamodule: object
    people: np.ndarray  # analysed cohort positions, sorted
    device: str = "cpu"
    cache: dict = field(default_factory=dict)

    @property
    def cohort(self):
        return self.datamodule.cohort

    @property
    def fit_people(self) -> np.ndarray:
        """Training people (sequence tokens and panel): what peers are fitted on."""
        s = self.datamodule.splits
        return np.sort(np.concatenate([s["train"], s["panel"]]))


# ----------------------------------------------------------------------------- matrix methods


def model_attention(ctx: Context, seqs: list[np.ndarray]) -> Extracted:
    return extract(ctx.net, ctx.datamodule, seqs, device=ctx.device)


def untrained_attention(ctx: Context, seqs: list[np.ndarray]) -> Extracted:
    return extract(ctx.untrained, ctx.datamodule, seqs, device=ctx.device)


def softmax_king_attention(ctx: Context, seqs: list[np.ndarray], temperature: float) -> Extracted:
    king = ctx.cohort.king
    return Extracted(seqs, [softmax_king(torch.from_numpy(king[np.ix_(q, q)]), temperature)[None] for q in seqs],
                     [("softmax", 0, f"T={temperature:.4g}")])


MATRIX_METHODS = {"model": model_attention, "untrained": untrained_attention, "softmax_king": softmax_king_attention}


# ----------------------------------------------------------------------------- embedding methods


def king_rows(ctx: Context, extracted: Extracted | None = None) -> np.ndarray:
    """Each analysed person's KING values with the other analysed people."""
    return ctx.cohort.king[np.ix_(ctx.people, ctx.people)]


def king_pca10(ctx: Context, extracted: Extracted | None = None) -> np.ndarray:
    """10 principal components (scikit-learn PCA) of the analysed people's KING rows."""
    from sklearn.decomposition import PCA

    x = king_rows(ctx)
    return PCA(n_components=min(10, len(x) - 1), random_state=0).fit_transform(x)


def _genotype_pca(ctx: Context, k: int) -> np.ndarray | None:
    from seq2king.genetics.pca import genotype_pca

    source = ctx.cohort.open_genotypes()
    if source is None:
        return None
    key = ("genotype_pca", 20)
    if key not in ctx.cache:  # one pass over the genotypes for both 10 and 20 PCs
        row = {iid: i for i, iid in enumerate(source.samples.iid)}
        ids = ctx.cohort.ids
        fit = np.array([row[ids[i]] for i in ctx.fit_people])
        proj = np.array([row[ids[i]] for i in ctx.people])
        log.info("genotype PCA: fitting on %d training people, projecting %d", len(fit), len(proj))
        ctx.cache[key] = genotype_pca(source, fit, proj, n_components=20).scores
    return ctx.cache[key][:, :k]


def genotype_pca10(ctx: Context, extracted: Extracted | None = None) -> np.ndarray | None:
    """10 PCs of standardised genotypes, fitted on training people, analysed people projected."""
    return _genotype_pca(ctx, 10)


def genotype_pca20(ctx: Context, extracted: Extracted | None = None) -> np.ndarray | None:
    """As :func:`genotype_pca10` with 20 PCs (within-continent structure needs more axes)."""
    return _genotype_pca(ctx, 20)


def model_embedding(ctx: Context, extracted: Extracted) -> np.ndarray:
    """The model's embedding of each person (input of the last attention), averaged over sequences."""
    return np.stack([extracted.embeddings[int(p)] for p in ctx.people])


EMBEDDING_METHODS = {"model": model_embedding}
EMBEDDING_PEERS = {"king_rows": king_rows, "king_pca10": king_pca10, "genotype_pca10": genotype_pca10,
                   "genotype_pca20": genotype_pca20}


# ----------------------------------------------------------------------------- scoring


@dataclass
class MatrixScores:
    """One matrix method scored at one label level, over the analysed people."""

    index: list
    person: PersonMasses  # per-person masses (observed labels)
    labels: np.ndarray  # (N,) group ids of the analysed people
    n_groups: int
    top1: np.ndarray  # (m,) share of person-appearances whose top-attended other is in their group
    p_macro: np.ndarray | None = None  # (m,) permutation p of the macro lift
    p_group: np.ndarray | None = None  # (m, g) per-group permutation p

    def __post_init__(self):
        g = self.person.groups(self.labels[None], self.n_groups)
        self.shares, self.chance = g.shares()[0], g.chance()[0]  # (m, g), (g,)
        self.lifts = g.lifts()[0]
        self.macro_share, self.macro_lift = g.macro_share()[0], g.macro_lift()[0]
        self.macro_chance = float(g.macro_chance()[0])

    def share_stat(self, i: int):
        """Bootstrap statistic: the macro intra share of matrix ``i`` under person weights (b, N)."""
        one = self.person.select(i)
        return lambda w: one.groups(self.labels[None], self.n_groups, weights=w).macro_share()[:, 0]

    def row(self, i: int) -> dict:
        out = {"intra_share": float(self.macro_share[i]), "lift": float(self.macro_lift[i]),
               "top1_share": float(self.top1[i])}
        if self.p_macro is not None:
            out["p_value"] = float(self.p_macro[i])
        return out


def score_matrices(ex: Extracted, people: np.ndarray, labels: np.ndarray, n_groups: int,
                   perms: np.ndarray | None = None) -> MatrixScores:
    """Score every matrix of ``ex`` with ``labels`` ((N,) ids of ``people``).

    ``perms`` ((P, N) index permutations of the analysed people) adds permutation
    p-values, computed by the same float64 code as the observed figures.
    """
    pos = {int(p): i for i, p in enumerate(people)}
    seqs = [(a, np.array([pos[int(p)] for p in q])) for q, a in zip(ex.seqs, ex.stacks)]
    pm = person_masses(seqs, labels[None], n_groups, len(people))
    hits = np.concatenate([top1_hits(a, labels[m]) for a, m in seqs], axis=1)
    sc = MatrixScores(ex.index, pm, labels, n_groups, hits.mean(1))
    if perms is not None and len(perms):
        lifts = permuted_lifts(seqs, labels[perms], n_groups, len(people))  # (P, m, g)
        sc.p_macro = p_values(sc.macro_lift, _nanmean(lifts, -1))
        sc.p_group = p_values(sc.lifts, lifts)
    return sc

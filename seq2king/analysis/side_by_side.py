"""Every method side by side: each yields attention-like matrices or an embedding per person.

Matrix methods (:data:`MATRIX_METHODS`) give an :class:`Extracted` stack over
sequences of people: the trained model (every layer x head x scheme) and the same
architecture untrained. The parameter-free attention baselines are softmax over
every similarity the model is fed (:data:`SIMILARITIES`: KING, its token features,
its genotype PCs, the genomic relationship), each at a temperature matched to the
model's entropy. Embedding methods give one row per analysed person: the model's
embedding, and the peers (:func:`embedding_peers`): KING rows, PCA of KING, the
token features as fed, genotype PCA (10, 20 and the model's number of PCs, raw and
whitened) fitted on training people. :func:`score_matrices` and
:func:`~seq2king.analysis.stats.embedding_scores` score every method the same way.

Adding a method is one function added to a registry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from seq2king.analysis.attention import Extracted, extract
from seq2king.analysis.connectivity import (PersonMasses, nanmean, p_values, permuted_lifts, person_masses,
                                            softmax_king, top1_hits)
from seq2king.genetics.pca import genotype_pca, store_genotype_pca

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


def king_similarity(ctx: Context, seq: np.ndarray) -> np.ndarray:
    """KING between the people of ``seq`` (from the full matrix or the genotype store: the same values)."""
    return ctx.datamodule.king.block(np.asarray(seq))


def _feature_similarity(ctx: Context, seq: np.ndarray, block: str | None) -> np.ndarray | None:
    """Minus the squared Euclidean distance (scikit-learn) between the token features of ``seq`` as fed:
    all of them (``block=None``) or one block of columns (``"pcs"``); None when the tokens have none."""
    from sklearn.metrics.pairwise import euclidean_distances

    f = ctx.datamodule.features
    lo, hi = (0, f.shape[1]) if block is None else getattr(ctx.datamodule, "feature_blocks", {}).get(block, (0, 0))
    if hi <= lo:
        return None
    x = f[torch.from_numpy(np.asarray(seq))][:, lo:hi].double().numpy()
    return -euclidean_distances(x, squared=True)


def inputs_similarity(ctx: Context, seq: np.ndarray) -> np.ndarray | None:
    """Minus the squared distance between the model's token features exactly as fed."""
    return _feature_similarity(ctx, seq, None)


def pcs_similarity(ctx: Context, seq: np.ndarray) -> np.ndarray | None:
    """Minus the squared distance between the genotype PCs in the token (as fed: unit variance)."""
    return _feature_similarity(ctx, seq, "pcs")


def grm_similarity(ctx: Context, seq: np.ndarray) -> np.ndarray | None:
    """Genomic relationship between the people of ``seq``: standardised genotypes, allele frequencies
    from training people only, averaged over variants; from the genotype PCA's pass (:func:`_genotype_fit`)."""
    fit = _genotype_fit(ctx)
    if fit is None:
        return None
    pos = np.searchsorted(ctx.people, seq)  # ctx.people is sorted
    return fit.relationship[np.ix_(pos, pos)]


# Parameter-free attention over every similarity the model is fed: each is softmax over
# the others of ``similarity / T``, T matched to the model's headline entropy.
SIMILARITIES = {"softmax_king": king_similarity, "softmax_inputs": inputs_similarity,
                "softmax_pcs": pcs_similarity, "softmax_grm": grm_similarity}
ATTENTION_BASELINE_NOTES = {
    "softmax_king": "softmax over KING",
    "softmax_inputs": "softmax over minus the squared distance between the token features as fed",
    "softmax_pcs": "softmax over minus the squared distance between the genotype PCs in the token",
    "softmax_grm": "softmax over the genomic relationship (standardised genotypes, training allele frequencies)",
}


def similarities(ctx: Context, name: str, seqs: list[np.ndarray]) -> list[torch.Tensor] | None:
    """One ``(n, n)`` float64 similarity per sequence for baseline ``name``; None when the run lacks it."""
    fn = SIMILARITIES[name]
    out = []
    for q in seqs:
        x = fn(ctx, q)
        if x is None:
            return None
        out.append(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)))
    return out


def softmax_attention(sims: list[torch.Tensor], seqs: list[np.ndarray], temperature: float) -> Extracted:
    """Softmax over the others of each sequence's similarity / T (a parameter-free baseline)."""
    return Extracted(seqs, [softmax_king(s, temperature)[None] for s in sims],
                     [("softmax", 0, f"T={temperature:.4g}")])


def softmax_king_attention(ctx: Context, seqs: list[np.ndarray], temperature: float) -> Extracted:
    return softmax_attention(similarities(ctx, "softmax_king", seqs), seqs, temperature)


MATRIX_METHODS = {"model": model_attention, "untrained": untrained_attention, "softmax_king": softmax_king_attention}


# ----------------------------------------------------------------------------- embedding methods


def king_rows(ctx: Context, extracted: Extracted | None = None) -> np.ndarray:
    """Each analysed person's KING values with the other analysed people."""
    return ctx.datamodule.king.block(ctx.people)


def king_pca10(ctx: Context, extracted: Extracted | None = None) -> np.ndarray:
    """10 principal components (scikit-learn PCA) of the analysed people's KING rows."""
    from sklearn.decomposition import PCA

    x = king_rows(ctx)
    return PCA(n_components=min(10, len(x) - 1), random_state=0).fit_transform(x)


def _genotype_fit(ctx: Context):
    """Genotype PCA fitted on training people (as many PCs as any peer needs) with the analysed people
    projected, and their genomic relationship, in one pass over the genotypes; None without genotypes."""
    if "genotype_pca" not in ctx.cache:
        source = ctx.cohort.open_genotypes()
        if ctx.cohort.store is not None:  # streamed: from the genotype store, fitted on a sample
            dm = ctx.datamodule
            n = max(20, int(getattr(dm, "genotype_pcs", 0) or 0))
            ctx.cache["genotype_pca"] = store_genotype_pca(
                ctx.cohort.store, ctx.cohort.store_rows, ctx.fit_people, ctx.people, n_components=n,
                fit_max=dm.pca_fit_max, seed=dm.split_seed)
        elif source is None:
            ctx.cache["genotype_pca"] = None
        else:
            row = {iid: i for i, iid in enumerate(source.samples.iid)}
            ids = ctx.cohort.ids
            fit = np.array([row[ids[i]] for i in ctx.fit_people])
            proj = np.array([row[ids[i]] for i in ctx.people])
            n = max(20, int(getattr(ctx.datamodule, "genotype_pcs", 0) or 0))
            log.info("genotype PCA: fitting %d PCs on %d training people, projecting %d", n, len(fit), len(proj))
            ctx.cache["genotype_pca"] = genotype_pca(source, fit, proj, n_components=n, with_relationship=True)
    return ctx.cache["genotype_pca"]


def _genotype_pca(ctx: Context, k: int, white: bool = False) -> np.ndarray | None:
    """The first ``k`` genotype PCs of the analysed people; ``white``: each at unit variance
    over the training people it was fitted on."""
    res = _genotype_fit(ctx)
    if res is None:
        return None
    x = res.scores[:, :k]
    if white:
        sd = res.fit_scores[:, :k].std(0)
        x = x / np.where(sd > 0, sd, 1.0)
    return x


def genotype_pca_peers(ctx: Context) -> dict:
    """``genotype_pca10``, ``genotype_pca20`` and ``genotype_pcaK`` (K = the model's
    ``data.genotype_pcs`` when it differs), each raw and whitened (``_white``)."""
    ks = [10, 20]
    k_model = int(getattr(ctx.datamodule, "genotype_pcs", 0) or 0)
    if getattr(ctx.datamodule, "feature_blocks", {}).get("pcs") and k_model not in ks:
        ks.append(k_model)
    out = {}
    for k in ks:
        out[f"genotype_pca{k}"] = lambda ctx, extracted=None, k=k: _genotype_pca(ctx, k)
        out[f"genotype_pca{k}_white"] = lambda ctx, extracted=None, k=k: _genotype_pca(ctx, k, white=True)
    return out


def inputs(ctx: Context, extracted: Extracted | None = None) -> np.ndarray | None:
    """The model's token features exactly as fed (KING to the panel, and from genotypes the
    genomic relationship to it and the genotype PCs)."""
    f = ctx.datamodule.features
    return f[torch.from_numpy(ctx.people)].double().numpy() if f.shape[1] else None


def model_embedding(ctx: Context, extracted: Extracted) -> np.ndarray:
    """The model's embedding of each person (see :meth:`Seq2King.forward`), averaged over sequences."""
    return np.stack([extracted.embeddings[int(p)] for p in ctx.people])


def embedding_peers(ctx: Context) -> dict:
    """Every embedding peer this run's inputs allow, by name."""
    return {"king_rows": king_rows, "king_pca10": king_pca10, "inputs": inputs, **genotype_pca_peers(ctx)}


EMBEDDING_METHODS = {"model": model_embedding}


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
        sc.p_macro = p_values(sc.macro_lift, nanmean(lifts, -1))
        sc.p_group = p_values(sc.lifts, lifts)
    return sc

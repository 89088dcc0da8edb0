"""Genotype PCA, the field's everyday tool (what ``plink2 --pca`` users draw), fitted on training people.

Genotypes are standardised per variant with allele frequencies from the FIT
people only, ``x = (g - 2p) / sqrt(2p(1 - p))`` (missing calls -> 0, i.e. the
fit mean), variants monomorphic among the fit people dropped. The data are
streamed in variant blocks from any :class:`GenotypeSource`, accumulating the
fit people's Gram matrix ``X_f X_fᵀ`` and the cross products ``X_p X_fᵀ`` with the
people to project; scikit-learn's ``KernelPCA`` on that precomputed (linear)
kernel gives exactly PCA of ``X_f`` and the projection of ``X_p`` onto its axes,
without holding the ``people x variants`` matrix in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seq2king.errors import InputError
from seq2king.genetics.genotypes import MISSING, GenotypeSource


@dataclass
class GenotypePCA:
    fit_scores: np.ndarray  # (n_fit, k)
    scores: np.ndarray  # (n_project, k)
    n_variants: int  # variants used (polymorphic among the fit people)
    relationship: np.ndarray | None = None  # (n_project, n_project) genomic relationship, when asked for


def allele_frequencies(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALT frequency of each column of ``g`` (int8 ALT counts) over its called genotypes,
    and which columns are usable: called somewhere and polymorphic."""
    called = g != MISSING
    n_called = called.sum(0)
    freq = np.where(called, g, 0).sum(0, dtype=np.int64) / np.maximum(2 * n_called, 1)
    return freq, (n_called > 0) & (freq > 0) & (freq < 1)


def standardise(g: np.ndarray, freq: np.ndarray, dtype=np.float32) -> np.ndarray:
    """``(g - 2p) / sqrt(2p(1 - p))`` column-wise, missing calls 0 (the mean)."""
    mean, sd = (2 * freq).astype(dtype), np.sqrt(2 * freq * (1 - freq)).astype(dtype)
    return np.where(g == MISSING, dtype(0), (g.astype(dtype) - mean) / sd)


def standardised_blocks(source: GenotypeSource, freq_rows: np.ndarray, block_size: int = 8192,
                        dtype=np.float32):
    """Yield ``(n_samples, b)`` blocks of standardised genotypes, frequencies from ``freq_rows`` only.

    Variants monomorphic (or uncalled) among ``freq_rows`` are dropped; missing calls are 0.
    """
    freq_rows = np.asarray(freq_rows)
    for block in source.iter_blocks(block_size=block_size, king_only=True):
        freq, keep = allele_frequencies(block[freq_rows])
        if keep.any():
            yield standardise(block[:, keep], freq[keep], dtype)


def standardised_products(source: GenotypeSource, freq_rows: np.ndarray, pairs: list[tuple],
                          block_size: int = 8192, dtype=np.float32) -> tuple[list[np.ndarray], int]:
    """``([X_a X_bᵀ for (a, b) in pairs], M)``: products of standardised genotypes in one pass, summed over
    ``M`` variants.

    Rows index the source's samples; frequencies come from ``freq_rows`` only. Each
    block's products run in ``dtype`` (float32: twice as fast, ~1e-7 relative error
    per block) and are summed in float64.
    """
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in pairs]
    out = [np.zeros((len(a), len(b))) for a, b in pairs]
    used = 0
    for x in standardised_blocks(source, freq_rows, block_size, dtype):
        for acc, (a, b) in zip(out, pairs):
            acc += x[a] @ x[b].T
        used += x.shape[1]
    return out, used


def no_variation(source, n_fit: int, what: str = "") -> InputError:
    return InputError(f"{getattr(source, 'path', source)}: no variant is polymorphic among the "
                      f"{n_fit} training people{what}")


def standardised_kernels(source: GenotypeSource, fit_rows: np.ndarray, project_rows: np.ndarray,
                         block_size: int = 8192, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, int]:
    """``(K_ff, K_pf, M)``: linear kernels of standardised genotypes (:func:`standardised_products`),
    frequencies from ``fit_rows`` only."""
    (k_ff, k_pf), used = standardised_products(source, fit_rows, [(fit_rows, fit_rows), (project_rows, fit_rows)],
                                               block_size, dtype)
    return k_ff, k_pf, used


def relationship(source: GenotypeSource, freq_rows: np.ndarray, rows: np.ndarray, block_size: int = 8192,
                 dtype=np.float32) -> np.ndarray:
    """``(len(rows), len(rows))`` genomic relationship ``X Xᵀ / M`` of standardised genotypes,
    allele frequencies from ``freq_rows`` only (variants monomorphic among them dropped)."""
    (k,), used = standardised_products(source, freq_rows, [(rows, rows)], block_size, dtype)
    if used == 0:
        raise no_variation(source, len(freq_rows))
    return k / used


def genotype_pca(source: GenotypeSource, fit_rows: np.ndarray, project_rows: np.ndarray,
                 n_components: int = 10, block_size: int = 8192, dtype=np.float32,
                 with_relationship: bool = False) -> GenotypePCA:
    """Top ``n_components`` PCs of the fit people's standardised genotypes, and the projected people's scores.

    ``with_relationship``: also the projected people's genomic relationship among themselves
    (:func:`relationship`), from the same pass over the genotypes."""
    from sklearn.decomposition import KernelPCA

    pairs = [(fit_rows, fit_rows), (project_rows, fit_rows)] + ([(project_rows, project_rows)]
                                                                 if with_relationship else [])
    kernels, m = standardised_products(source, fit_rows, pairs, block_size, dtype)
    if m == 0:
        raise no_variation(source, len(fit_rows), "; genotype PCA needs variation")
    k_ff, k_pf = kernels[0] / m, kernels[1] / m
    k = min(n_components, len(fit_rows) - 1)
    kpca = KernelPCA(n_components=k, kernel="precomputed", eigen_solver="dense").fit(k_ff)
    return GenotypePCA(kpca.transform(k_ff), kpca.transform(k_pf), m,
                       kernels[2] / m if with_relationship else None)


def held_out_scores(k_ff: np.ndarray, k_pf: np.ndarray, held_rows: np.ndarray, n_components: int,
                    seed: int = 0) -> np.ndarray:
    """``(p, k)`` PC scores of every projected person.

    The held people are the first ``len(held_rows)`` fit people and rows ``held_rows`` of
    ``k_pf``; they are scored out of fold (:func:`out_of_fold_scores`), everyone else projected.
    """
    pcs, held = out_of_fold_scores(k_ff, k_pf, np.arange(len(held_rows)), n_components, seed=seed)
    pcs[held_rows] = held
    return pcs


def held_out_pcs(k_ff: np.ndarray, k_pf: np.ndarray, held_rows: np.ndarray, n_components: int,
                 seed: int = 0) -> np.ndarray:
    """:func:`held_out_scores`, each PC scaled to unit variance over the held people."""
    pcs = held_out_scores(k_ff, k_pf, held_rows, n_components, seed=seed)
    sd = pcs[held_rows].std(0)
    return pcs / np.where(sd > 0, sd, 1.0)


def out_of_fold_scores(k_ff: np.ndarray, k_pf: np.ndarray, held: np.ndarray, n_components: int,
                       folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PC scores with no person scored on axes their own genotypes helped fit.

    ``k_ff`` ``(f, f)`` and ``k_pf`` ``(p, f)``: linear kernels of standardised genotypes
    (:func:`standardised_kernels`, divided by the number of variants) of the fit
    people and of people to project. ``held``: positions (into the fit people) of
    those whose own scores are wanted, e.g. the training tokens.

    Returns ``(projected (p, k), held_scores (len(held), k))``: the projected people on
    axes fitted on every fit person, and each held person on axes fitted without
    their fold (``folds`` folds), rotated onto the full fit's axes by orthogonal
    Procrustes on the people both fits share (scipy). In-sample scores are inflated
    by the person's own noise while projected ones are not; a model trained on
    in-sample scores would meet differently scaled ones in new people.
    """
    from scipy.linalg import orthogonal_procrustes
    from sklearn.decomposition import KernelPCA

    k = min(n_components, len(k_ff) - 1)
    full = KernelPCA(n_components=k, kernel="precomputed", eigen_solver="dense")
    fit_scores = full.fit_transform(k_ff)
    projected = full.transform(k_pf)
    held = np.asarray(held)
    out = np.zeros((len(held), k))
    rng = np.random.default_rng(seed)
    for part in np.array_split(rng.permutation(len(held)), folds):
        rest = np.setdiff1d(np.arange(len(k_ff)), held[part])
        sub = KernelPCA(n_components=k, kernel="precomputed", eigen_solver="dense")
        rest_scores = sub.fit_transform(k_ff[np.ix_(rest, rest)])
        rot, _ = orthogonal_procrustes(rest_scores, fit_scores[rest])
        out[part] = sub.transform(k_ff[np.ix_(held[part], rest)]) @ rot
    return projected, out


def fit_frequencies(store, fit_rows) -> tuple[np.ndarray, np.ndarray]:
    """``(freq, keep)``: which variants are usable (called and polymorphic among ``fit_rows``) and their ALT
    frequency over the called genotypes (:func:`allele_frequencies`, streamed from a genotype store)."""
    alt = np.zeros(store.m, dtype=np.int64)
    called = np.zeros(store.m, dtype=np.int64)
    for _, g in store.row_blocks(np.sort(np.asarray(fit_rows))):
        ok = g != MISSING
        called += ok.sum(0)
        alt += np.where(ok, g, 0).sum(0, dtype=np.int64)
    freq = alt / np.maximum(2 * called, 1)
    keep = (called > 0) & (freq > 0) & (freq < 1)
    if not keep.any():
        raise no_variation(store.header.get("genotypes"), len(fit_rows))
    return freq[keep], keep


def _sample_fit(store, rows: np.ndarray, keep: np.ndarray, freq: np.ndarray, fit: np.ndarray,
                n_components: int, fit_max: int, seed: int):
    """What both store PCAs fit on: a seeded sample of at most ``fit_max`` of the ``fit`` people (all of them
    when fewer), their standardised genotypes, and a maker of scikit-learn's randomized PCA with as many
    components as the sample allows. Returns ``(rng, sample, z, pca)``; ``rng`` goes on to the folds."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng([seed, 4])
    fit = np.sort(np.asarray(fit))
    sample = fit if len(fit) <= fit_max else np.sort(rng.choice(fit, fit_max, replace=False))
    z = standardise(store.rows(rows[sample])[:, keep], freq)
    k = min(n_components, len(sample) - 1, z.shape[1])
    return rng, sample, z, lambda: PCA(n_components=k, svd_solver="randomized", random_state=seed)


def streamed_pcs(store, rows: np.ndarray, keep: np.ndarray, freq: np.ndarray, fit: np.ndarray,
                 held: np.ndarray, n_components: int, fit_max: int = 10000, seed: int = 0,
                 folds: int = 5) -> np.ndarray:
    """``(len(rows), k)`` PC scores of every person of a cohort streamed from a genotype store
    (:class:`~seq2king.genetics.store.GenotypeStore`; ``rows``: each person's store row).

    scikit-learn's randomized PCA is fitted on at most ``fit_max`` of the ``fit`` people (a seeded
    sample; all of them when fewer), genotypes standardised with ``freq`` over the ``keep`` variants.
    Everyone is projected in row blocks; the ``held`` people inside the fitted sample are then scored
    out of fold as :func:`out_of_fold_scores` does (``folds`` refits without them, rotated onto the full
    fit's axes by orthogonal Procrustes); held people outside it are new to the fit already. Memory:
    the sample's standardised genotypes, ``fit_max x variants`` float32, about three times over."""
    from scipy.linalg import orthogonal_procrustes

    rng, sample, z, pca = _sample_fit(store, rows, keep, freq, fit, n_components, fit_max, seed)
    full = pca().fit(z)
    fit_scores = full.transform(z)
    out = np.empty((len(rows), fit_scores.shape[1]))
    for sl, g in store.row_blocks(rows):
        out[sl] = full.transform(standardise(g[:, keep], freq))
    inside = np.flatnonzero(np.isin(sample, held))
    for part in np.array_split(rng.permutation(inside), folds):
        if not len(part):
            continue
        rest = np.setdiff1d(np.arange(len(sample)), part)
        sub = pca().fit(z[rest])
        rot, _ = orthogonal_procrustes(sub.transform(z[rest]), fit_scores[rest])
        out[sample[part]] = sub.transform(z[part]) @ rot
    return out


def store_genotype_pca(store, rows: np.ndarray, fit: np.ndarray, people: np.ndarray, n_components: int = 20,
                       fit_max: int = 10000, seed: int = 0) -> GenotypePCA:
    """:func:`genotype_pca` with ``with_relationship`` from a genotype store: frequencies from every
    ``fit`` person, scikit-learn's randomized PCA fitted on at most ``fit_max`` of them (seeded), the
    ``people`` projected, and their genomic relationship among themselves (``people x people``: keep
    them few, e.g. ``analysis.max_people``)."""
    freq, keep = fit_frequencies(store, rows[np.asarray(fit)])
    _, _, z, pca = _sample_fit(store, rows, keep, freq, fit, n_components, fit_max, seed)
    pca = pca().fit(z)
    fit_scores = pca.transform(z)
    del z
    zp = standardise(store.rows(rows[np.asarray(people)])[:, keep], freq)
    return GenotypePCA(fit_scores, pca.transform(zp), int(keep.sum()), (zp @ zp.T).astype(np.float64) / len(freq))

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


def standardised_blocks(source: GenotypeSource, freq_rows: np.ndarray, block_size: int = 8192,
                        dtype=np.float32):
    """Yield ``(n_samples, b)`` blocks of standardised genotypes, frequencies from ``freq_rows`` only.

    Variants monomorphic (or uncalled) among ``freq_rows`` are dropped; missing calls are 0.
    """
    freq_rows = np.asarray(freq_rows)
    for block in source.iter_blocks(block_size=block_size, king_only=True):
        f = block[freq_rows]
        called = f != MISSING
        n_called = called.sum(0)
        freq = np.where(called, f, 0).sum(0, dtype=np.int64) / np.maximum(2 * n_called, 1)
        keep = (n_called > 0) & (freq > 0) & (freq < 1)
        if not keep.any():
            continue
        g = block[:, keep]
        mean, sd = (2 * freq[keep]).astype(dtype), np.sqrt(2 * freq[keep] * (1 - freq[keep])).astype(dtype)
        yield np.where(g == MISSING, dtype(0), (g.astype(dtype) - mean) / sd)


def standardised_kernels(source: GenotypeSource, fit_rows: np.ndarray, project_rows: np.ndarray,
                         block_size: int = 8192, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, int]:
    """``(K_ff, K_pf, M)``: linear kernels of standardised genotypes, summed over ``M`` variants.

    Rows index the source's samples; frequencies come from ``fit_rows`` only. Each
    block's products run in ``dtype`` (float32: twice as fast, ~1e-7 relative error
    per block) and are summed in float64.
    """
    fit_rows, project_rows = np.asarray(fit_rows), np.asarray(project_rows)
    k_ff = np.zeros((len(fit_rows), len(fit_rows)))
    k_pf = np.zeros((len(project_rows), len(fit_rows)))
    used = 0
    for x in standardised_blocks(source, fit_rows, block_size, dtype):
        xf = x[fit_rows]
        k_ff += xf @ xf.T
        k_pf += x[project_rows] @ xf.T
        used += x.shape[1]
    return k_ff, k_pf, used


def relationship_to(source: GenotypeSource, freq_rows: np.ndarray, cols: np.ndarray,
                    block_size: int = 8192) -> np.ndarray:
    """Genomic relationship ``X X_colsᵀ / M`` of every sample with the samples ``cols``,
    genotypes standardised with frequencies from ``freq_rows``: ``(n_samples, len(cols))``."""
    cols = np.asarray(cols)
    out, used = None, 0
    for x in standardised_blocks(source, freq_rows, block_size):
        part = x @ x[cols].T
        out = part.astype(np.float64) if out is None else out + part
        used += x.shape[1]
    if used == 0:
        raise InputError(f"{getattr(source, 'path', source)}: no variant is polymorphic among the training people")
    return out / used


def genotype_pca(source: GenotypeSource, fit_rows: np.ndarray, project_rows: np.ndarray,
                 n_components: int = 10, block_size: int = 8192, dtype=np.float32) -> GenotypePCA:
    """Top ``n_components`` PCs of the fit people's standardised genotypes, and the projected people's scores."""
    from sklearn.decomposition import KernelPCA

    k_ff, k_pf, m = standardised_kernels(source, fit_rows, project_rows, block_size, dtype)
    if m == 0:
        raise InputError(f"{getattr(source, 'path', source)}: no variant is polymorphic among the "
                         f"{len(fit_rows)} training people; genotype PCA needs variation")
    k = min(n_components, len(fit_rows) - 1)
    kpca = KernelPCA(n_components=k, kernel="precomputed", eigen_solver="dense").fit(k_ff / m)
    return GenotypePCA(kpca.transform(k_ff / m), kpca.transform(k_pf / m), m)

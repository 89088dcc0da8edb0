"""A relationship between any people of a cohort (KING, or the genomic relationship), wherever it comes from.

One question, "this relationship for these rows and columns", several answers:
:class:`MatrixKing` reads a full matrix held in memory (small cohorts: KING, or the
genomic relationship computed in one pass), :class:`StoreKing` computes KING from the
person-major genotype store (:class:`~seq2king.genetics.store.GenotypeStore`, nothing
people x people), bit for bit the matrix's values, and :class:`StoreGrm` the genomic
relationship from the same store. The data set-up asks only this interface: the KING
rectangle people x panel for the tokens, a sample of training pairs for the target
scaler, and each sequence's block for its targets.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from seq2king.data.cohort import Cohort
from seq2king.genetics.pca import standardise
from seq2king.genetics.store import store_king_pairs

log = logging.getLogger(__name__)


class KingSource:
    """A relationship (float64, unscaled; KING-robust unless said otherwise) between cohort positions."""

    def block(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """``(len(a), len(b))`` KING between ``a`` and ``b`` (``None``: ``a`` with itself)."""
        raise NotImplementedError

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """KING of each pair ``(a[k], b[k])``."""
        raise NotImplementedError

    def scaler_pairs(self, train: np.ndarray, n: int, seed: int) -> np.ndarray:
        """The KING values the target scaler is fitted on (training pairs)."""
        raise NotImplementedError

    def rectangle(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:meth:`block` for everyone against a few (the tokens: people x panel)."""
        return self.block(a, b)


class MatrixKing(KingSource):
    """The full matrix in memory."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def block(self, a, b=None):
        return self.values[np.ix_(a, a if b is None else b)]

    def pairs(self, a, b):
        return self.values[a, b]

    def scaler_pairs(self, train, n, seed):
        """Every pair of training tokens (cheap with the matrix at hand)."""
        return self.values[np.ix_(train, train)][~np.eye(len(train), dtype=bool)]


class StoreKing(KingSource):
    """Computed on demand from the genotype store's rows (``rows``: each cohort position's store row)."""

    def __init__(self, store, rows: np.ndarray, chunk: int = 2048):
        self.store, self.rows, self.chunk = store, rows, chunk

    def block(self, a, b=None):
        return self.store.king(self.rows[np.asarray(a)], None if b is None else self.rows[np.asarray(b)])

    def pairs(self, a, b):
        return store_king_pairs(self.store, self.rows[np.asarray(a)], self.rows[np.asarray(b)])

    def scaler_pairs(self, train, n, seed):
        """``n`` seeded random pairs of training tokens (all pairs would be people x people)."""
        rng = np.random.default_rng([seed, 3])
        a, b = rng.choice(train, n), rng.choice(train, n)
        return self.pairs(a[a != b], b[a != b])

    def rectangle(self, a, b):
        a = np.asarray(a)
        out = np.empty((len(a), len(b)))
        t0 = time.perf_counter()
        for s in tqdm(range(0, len(a), self.chunk), desc="KING to the panel", leave=False):
            out[s:s + self.chunk] = self.block(a[s:s + self.chunk], b)
        log.info("KING to the panel (%d people x %d) took %.1f s", len(a), len(b), time.perf_counter() - t0)
        return out


class StoreGrm(StoreKing):
    """The genomic relationship ``z_i . z_j / M`` from the store's rows: genotypes standardised with allele
    frequencies ``freq`` of the variants ``keep`` (fitted on training people), missing calls at the mean."""

    def __init__(self, store, rows: np.ndarray, freq: np.ndarray, keep: np.ndarray, chunk: int = 2048):
        super().__init__(store, rows, chunk)
        self.freq, self.keep = freq, keep

    def _z(self, a) -> np.ndarray:
        return standardise(self.store.rows(self.rows[np.asarray(a)])[:, self.keep], self.freq)

    def block(self, a, b=None):
        za = self._z(a)
        zb = za if b is None else self._z(b)
        return (za @ zb.T).astype(np.float64) / len(self.freq)

    def pairs(self, a, b):
        return np.einsum("ij,ij->i", self._z(a), self._z(b)).astype(np.float64) / len(self.freq)


def king_source(cohort: Cohort) -> KingSource:
    """The cohort's KING: its matrix when it holds one, else its genotype store."""
    if cohort.king is not None:
        return MatrixKing(cohort.king)
    return StoreKing(cohort.store, cohort.store_rows)

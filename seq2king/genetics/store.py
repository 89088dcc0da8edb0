"""A person-major genotype store: any person's genotypes in one read, for KING on demand.

A ``.bed`` (or .pgen, VCF) is variant-major: reading 128 people means reading every
variant's record for everyone. Training a model on a biobank needs the KING among
the 128 people of one sequence, so the genotypes are transposed once into
``PREFIX.store.npy`` (an ordinary ``.npy``: ``np.load(path, mmap_mode="r")`` opens
it), ``(people, variants)`` int8 non-REF counts with missing calls ``-127``, only
the variants plink2's KING uses, beside a ``PREFIX.store.json`` manifest naming the
genotypes it came from (their digests) and the checksums of the store's files.
The manifest is written last and checked byte for byte when the store is opened
(:mod:`seq2king.integrity`): a store without one is incomplete, and one whose
bytes, people or genotypes differ is rebuilt too (never used).

Rows are read with ``os.pread`` (not a memory map), so a process holds only the
rows it reads: a training process's memory does not grow with the store.

:func:`king_block` and :meth:`GenotypeStore.king` compute KING-robust from the rows with
the integer counts of :class:`~seq2king.genetics.king.KingEngine` and its one
float64 division, so every value is bit for bit the full matrix's entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from seq2king.errors import InputError
from seq2king.fileio import atomic_files
from seq2king.genetics.genotypes import MISSING, GenotypeSource
from seq2king.genetics.king import _kinship
from seq2king.integrity import check_manifest, write_manifest

log = logging.getLogger(__name__)

STORE_VERSION = 3  # 3: a sealed manifest with the files' checksums and the genotypes' digests


def _ids_digest(iids) -> str:
    return hashlib.sha256("\t".join(map(str, iids)).encode()).hexdigest()[:32]


class GenotypeStore:
    """Read rows of a built store (:meth:`build` or :meth:`open_or_build`)."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = str(prefix)
        self.path = Path(self.prefix + ".store.npy")
        header = json.loads(Path(self.prefix + ".store.json").read_text())
        self.header = header
        self.n, self.m = int(header["people"]), int(header["variants"])
        self.offset = int(header["offset"])
        stats = np.load(self.prefix + ".store.stats.npy")  # per person: heterozygous calls, sum of g^2, missing
        self.het, self.sq, self.miss = stats[:, 0], stats[:, 1], stats[:, 2]
        self._fd = None

    # pickled into DataLoader workers and DDP processes: each opens its own descriptor
    def __getstate__(self):
        return {**self.__dict__, "_fd": None}

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def rows(self, idx) -> np.ndarray:
        """``(len(idx), variants)`` int8 genotypes of store rows ``idx`` (any order, repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), self.m), dtype=np.int8)
        fd, m, off = self._file(), self.m, self.offset
        if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and (np.diff(idx) == 1).all():
            buf = os.pread(fd, m * len(idx), off + int(idx[0]) * m)  # one contiguous range
            out[:] = np.frombuffer(buf, dtype=np.int8).reshape(len(idx), m)
            return out
        for k, i in enumerate(idx):
            out[k] = np.frombuffer(os.pread(fd, m, off + int(i) * m), dtype=np.int8)
        return out

    def king(self, idx_a, idx_b=None) -> np.ndarray:
        """KING-robust between store rows ``idx_a`` and ``idx_b`` (``None``: ``idx_a`` with itself), as
        :func:`king_block`; when none of them has a missing call, from one int8 product and the per-person
        sums kept at build (the same integers, so the same values)."""
        idx_a = np.asarray(idx_a)
        idx_b = idx_a if idx_b is None else np.asarray(idx_b)
        if self.miss[idx_a].any() or self.miss[idx_b].any():
            a = self.rows(idx_a)
            return king_block(a) if idx_b is idx_a else king_block(a, self.rows(idx_b))
        ta = torch.from_numpy(self.rows(idx_a))
        tb = ta if idx_b is idx_a else torch.from_numpy(self.rows(idx_b))
        gg = torch._int_mm(ta, tb.T).numpy()
        num = self.sq[idx_a][:, None] + self.sq[idx_b][None, :] - 2 * gg.astype(np.int64)
        return _kinship(num, np.minimum(self.het[idx_a][:, None], self.het[idx_b][None, :]))

    def row_blocks(self, idx, block: int = 2048):
        """``(positions, rows)`` for ``idx`` in blocks of ``block`` people (the passes over everyone)."""
        idx = np.asarray(idx, dtype=np.int64)
        for s in range(0, len(idx), block):
            yield slice(s, min(s + block, len(idx))), self.rows(idx[s:s + block])

    # -- building --------------------------------------------------------------------
    @staticmethod
    def _files(prefix: str) -> dict[str, Path]:
        return {"store.npy": Path(prefix + ".store.npy"), "stats.npy": Path(prefix + ".store.stats.npy")}

    @classmethod
    def matches(cls, prefix: str | os.PathLike, source: GenotypeSource, inputs: list[str] | None = None) -> str | None:
        """None when the store at ``prefix`` is complete, intact (every byte as its manifest's checksum says)
        and holds ``source``'s people and KING variants (made from genotypes whose digests are ``inputs``,
        when given), else why not."""
        prefix = str(prefix)
        expect = {"version": STORE_VERSION} if inputs is None else {"version": STORE_VERSION, "inputs": inputs}
        h, why = check_manifest(prefix + ".store.json", cls._files(prefix), expect=expect)
        if h is None:
            return why
        if h.get("people") != source.n_samples or h.get("ids") != _ids_digest(source.samples.iid):
            return "its people differ from the genotypes'"
        if inputs is None:
            n_var = source.count_variants(king_only=True)
            if n_var is not None and h.get("variants") != n_var:
                return f"it holds {h.get('variants')} variants, the genotypes {n_var}"
        if h["files"]["store.npy"]["size"] != int(h["offset"]) + int(h["people"]) * int(h["variants"]):
            return "its size does not match its header"
        return None

    @classmethod
    def open_or_build(cls, prefix: str | os.PathLike, source: GenotypeSource, inputs: list[str] | None = None,
                      progress: bool = True) -> "GenotypeStore":
        """The store at ``prefix``, checked byte for byte against its manifest (:meth:`matches`), or built
        again (one warning line) when it is missing, changed, torn or of other genotypes."""
        why = cls.matches(prefix, source, inputs)
        if why is not None:
            if why != "not built":
                log.warning("genotype store %s.store.npy cannot be used (%s): building it again", prefix, why)
            cls.build(prefix, source, inputs=inputs, progress=progress)
        return cls(prefix)

    @classmethod
    def build(cls, prefix: str | os.PathLike, source: GenotypeSource, block_variants: int = 4096,
              inputs: list[str] | None = None, progress: bool = True) -> None:
        """Transpose ``source``'s KING variants into ``PREFIX.store.npy``, one variant block at a time
        (memory: one block, ``people x block_variants`` bytes). Temporary files, then renames; the sealed
        manifest ``PREFIX.store.json`` (the files' checksums, ``inputs``: the genotypes' digests) last."""
        from tqdm.auto import tqdm

        prefix = str(prefix)
        n = source.n_samples
        m = source.count_variants(king_only=True)
        if m is None:  # VCF: count with one pass
            m = sum(b.shape[1] for b in source.iter_blocks(block_variants, king_only=True))
        if m == 0:
            raise InputError(f"{source.path}: no variants left for KING (only autosomes, XY and contig 0 are used)")
        Path(prefix + ".store.json").unlink(missing_ok=True)  # the manifest goes last: until then, not built
        stats = np.zeros((n, 3), dtype=np.int64)  # het, sum of g^2, missing
        files = cls._files(prefix)
        with atomic_files(files["store.npy"], files["stats.npy"]) as (tmp, stats_tmp):
            with open(tmp, "wb") as fh:
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int8)), "fortran_order": False,
                         "shape": (n, m)})
                offset = fh.tell()
                fh.truncate(offset + n * m)
            fd = os.open(tmp, os.O_WRONLY)
            try:
                v0 = 0
                bar = tqdm(total=m, unit="var", unit_scale=True, desc="genotype store", leave=False,
                           disable=not progress)
                for block in source.iter_blocks(block_variants, king_only=True):
                    k = block.shape[1]
                    block = np.ascontiguousarray(block)  # (n, k), person-major
                    het = (block == 1).sum(1)
                    stats[:, 0] += het
                    stats[:, 1] += het + 4 * (block == 2).sum(1)
                    stats[:, 2] += (block == MISSING).sum(1)
                    for i in range(n):
                        os.pwrite(fd, block[i].data, offset + i * m + v0)
                    v0 += k
                    bar.update(k)
                bar.close()
            finally:
                os.close(fd)
            if v0 != m:
                raise InputError(f"{source.path}: {v0} KING variants read, {m} expected")
            with open(stats_tmp, "wb") as fh:
                np.save(fh, stats)
        write_manifest(prefix + ".store.json", files, version=STORE_VERSION, people=n, variants=int(m),
                       offset=int(offset), ids=_ids_digest(source.samples.iid), genotypes=str(source.path),
                       **({} if inputs is None else {"inputs": inputs}))


# ----------------------------------------------------------------------------- KING from rows


class _Operands:
    """int8 operands of KingEngine for a set of rows: called genotypes (missing -> 0), heterozygous, g^2,
    missing; and per-row sums of each (products with a ones matrix: torch's int8 sums are slow on CPU)."""

    def __init__(self, g: np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(g))
        self.mi = (t < 0).view(torch.int8)
        self.gz = t.clamp_min(0)
        self.h = self.gz & 1
        self.g2 = 2 * self.gz - self.h  # g^2 = H + 4A
        ones = torch.ones((t.shape[1], 8), dtype=torch.int8)
        sums = [torch._int_mm(x, ones)[:, 0].to(torch.int64).numpy() for x in (self.h, self.g2, self.mi)]
        self.het, self.sq, self.miss = sums
        self.any_missing = bool(self.miss.any())


def king_block(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """KING-robust between every row of ``a`` and every row of ``b`` (int8 genotypes, missing ``-127``;
    ``b=None``: ``a`` with itself): ``(len(a), len(b))`` float64, the same integers and division as the
    full matrix (bit for bit)."""
    x = _Operands(a)
    y = x if b is None else _Operands(b)
    gg = torch._int_mm(x.gz, y.gz.T).numpy()
    het_i, het_j = x.het[:, None], y.het[None, :]
    num = x.sq[:, None] + y.sq[None, :] - 2 * gg.astype(np.int64)
    if x.any_missing or y.any_missing:  # counts over the variants called in both
        het_i = het_i - torch._int_mm(x.h, y.mi.T).numpy()
        het_j = het_j - torch._int_mm(x.mi, y.h.T).numpy()
        num = num - torch._int_mm(x.g2, y.mi.T).numpy() - torch._int_mm(x.mi, y.g2.T).numpy()
    het_i, het_j = np.broadcast_arrays(het_i, het_j)
    return _kinship(num, np.minimum(het_i, het_j))


def store_king_pairs(store: GenotypeStore, rows_a, rows_b, chunk: int = 64) -> np.ndarray:
    """KING of each pair ``(rows_a[k], rows_b[k])``: the diagonals of ``chunk x chunk`` blocks (an int8
    product beats elementwise sums 50-fold)."""
    rows_a, rows_b = np.asarray(rows_a), np.asarray(rows_b)
    out = np.empty(len(rows_a))
    for s in range(0, len(rows_a), chunk):
        out[s:s + chunk] = np.diagonal(store.king(rows_a[s:s + chunk], rows_b[s:s + chunk]))
    return out

"""Exact KING-robust kinship, as plink2 ``--make-king`` computes it.

For a pair of people i, j, counting only variants called in both:

    phi = 0.5 - (4*IBS0 + HET_i_HOM_j + HET_j_HOM_i) / (4*(HETHET + min(HET_i_HOM_j, HET_j_HOM_i)))

which is plink2's between-family estimator, identical to
``0.5 + (2*HetHet - 4*IBS0 - Het_i - Het_j) / (4*min(Het_i, Het_j))`` with
``Het_i`` counting i's heterozygous calls where j is also called. Counts are exact
integers; the division happens once, in float64, in plink2's order of
operations, so the result is bit-identical (a person with no heterozygous calls
gives ``-inf`` or ``nan`` exactly as plink2 does).

How the counts are formed, per block of variants, with g the non-REF count (0, 1,
2; missing set to 0) and ``@`` an int8 matrix product with int32 sums:

- the numerator is a sum of squares over both-called variants,
  ``4*IBS0 + HET1_HOM2 + HET2_HOM1 = sum (g_i - g_j)^2
  = SQ_i + SQ_j - Q_ij - Q_ji - 2 (G @ G.T)_ij``, where ``SQ_i = sum g_i^2`` and
  ``Q_ij`` sums ``g_i^2`` over variants where j is missing;
- the denominator needs ``Het_i`` where j is called, ``Het_i - (H @ Mi.T)_ij``
  (``H`` heterozygous, ``Mi`` missing indicators).

Without missing calls that is a single product ``G @ G.T``. With them, one more
product packs two small counts into one int32: ``(A + c*H) @ Mi.T = AMi + c*HMi``
(``A`` hom-ALT; ``g^2 = H + 4A``), exact while nobody has ``c = 127`` or more
missing calls in the variants of one product: a block where someone has is split
into shorter variant ranges until each fits (same operations in all), and only if
that takes ranges under 256 variants are the counts taken separately. The missing-call
counts are not even allocated until a missing call appears. With ``with_counts`` (the
``.kin0`` table) ``H @ H.T`` (HETHET) and ``Mi @ Mi.T`` (for NSNP) are added.

That is as far as int8 operands go: HMi is not symmetric, so its ``n x n`` entries
cost as much as two triangles of ``G @ G.T``, and no third count fits in an operand
of at most 127 (a missing-call block costs three triangles, plink2's bit counts one).

Products are taken over lower-triangular bands of rows (rows r0..r1 against
columns 0..r1), so about half of the pairs are computed, and bands are grouped
into passes over the genotypes that fit a memory budget (N = 100,000 people on
one GPU). The missing-call products are taken per band too, both orientations
(``W @ Mi.T`` and ``Mi @ W.T``): as many operations as one full ``(n, n)`` product,
and faster than one at N = 10,000 (6.1 s against 7.5 s in-process), whose four
``(n, n)`` buffers cost more in memory traffic than they saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import math

import numpy as np
import torch

from seq2king.errors import InputError
from seq2king.genetics.genotypes import GenotypeSource

# Digit base for packing HMi and AMi into one int32 (int8 operands: <= 127).
_C = 127
_DIV_MUL, _DIV_SHIFT = 8257, 20  # x * 8257 >> 20 == x // 127 for 0 <= x < 127 * 128
# Bytes per genotype of a block in flight: the block read, the next one read ahead, five int8
# operands and the products' temporaries.
_BLOCK_BYTES = 8


@dataclass
class KingBand:
    """KING results for rows ``r0..r1`` against columns ``0..r1`` (lower band).

    Arrays are ``(r1 - r0, r1)``; only entries with column < row are meaningful.
    """

    r0: int
    r1: int
    kinship: np.ndarray  # float64
    nsnp: np.ndarray  # int64, variants called in both
    hethet: np.ndarray  # int64
    ibs0: np.ndarray  # int64
    het_row_hom_col: np.ndarray  # int64
    het_col_hom_row: np.ndarray  # int64


def kinship_from_counts(ibs0, hethet, het1hom2, het2hom1) -> np.ndarray:
    """plink2's KING-robust coefficient from integer counts (any matching shapes)."""
    het1hom2 = np.asarray(het1hom2, dtype=np.int64)
    het2hom1 = np.asarray(het2hom1, dtype=np.int64)
    num = 4 * np.asarray(ibs0, dtype=np.int64) + het1hom2 + het2hom1
    return _kinship(num, np.asarray(hethet, dtype=np.int64) + np.minimum(het1hom2, het2hom1))


def _kinship(num: np.ndarray, smaller_het: np.ndarray) -> np.ndarray:
    """0.5 - num / (4 * smaller_het), in plink2's order: integers, then one float64 division.

    ``num`` = 4*IBS0 + HET1_HOM2 + HET2_HOM1; ``smaller_het`` = HETHET + min(HET1_HOM2,
    HET2_HOM1) = min(Het_i, Het_j) over both-called variants.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 - num.astype(np.float64) / (4 * smaller_het).astype(np.float64)


def _add_packed(prod: torch.Tensor, hmi: torch.Tensor, q: torch.Tensor) -> None:
    """Add ``prod = (A + c*H) . Mi`` to the counts: ``hmi += HMi``, ``q += HMi + 4*AMi`` (missing-weighted
    g^2), exact while AMi, HMi < c. ``prod`` is overwritten.

    ``HMi = floor(prod / c)`` as a multiply and a shift (integer division is slow on the CPU),
    exact over every value such a product can hold (tested); ``HMi + 4*AMi = 4*prod - (4c - 1)*HMi``.
    In place: at N = 10,000 each temporary is a 15 MB band."""
    q.add_(prod, alpha=4)
    h = prod.mul_(_DIV_MUL).bitwise_right_shift_(_DIV_SHIFT)
    hmi.add_(h)
    q.sub_(h, alpha=4 * _C - 1)


def _int_matmul(device: torch.device):
    """An exact int8 x int8 -> int32 product for this device."""
    if device.type in ("cpu", "cuda"):
        return torch._int_mm

    # Other backends: float32 is exact here because every partial sum stays
    # below 2**24 (block size <= 4096, operand entries <= 127).
    def f32(a, b):
        return (a.float() @ b.float()).round().to(torch.int32)

    return f32


def _pad_to(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    if x.shape == (rows, cols):
        return x
    out = x.new_zeros((rows, cols))
    out[: x.shape[0], : x.shape[1]] = x
    return out


class KingEngine:
    """Streams KING-robust bands for every pair of samples in ``source``.

    Parameters
    ----------
    source: the genotypes; only plink2's KING variants (autosomes, XY, 0) are used.
    device: ``"cpu"``, ``"cuda"``...; int8 products with int32 sums on both.
    block_variants: variants per product (8 to 65536; sums stay exact in int32).
    band_rows: rows per lower-triangular band.
    memory_bytes: budget for the work (pair-count accumulators, genotype blocks in
        flight, a band being finished); blocks shrink to a quarter of it and more
        people than fit in one pass are handled in several passes over the genotypes.
        The Python process and torch come on top (about 0.3 GB on CPU).
    """

    def __init__(
        self,
        source: GenotypeSource,
        device: str | torch.device = "cpu",
        block_variants: int = 8192,
        band_rows: int | None = None,
        memory_bytes: int | None = None,
        progress: bool = True,
        with_counts: bool = False,
        rows: tuple[int, int] | None = None,
    ):
        if not 8 <= block_variants <= 65536:
            raise InputError(f"block_variants={block_variants}: must be between 8 and 65536")
        self.source = source
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("device=cuda: no CUDA device is available")
        self.n = source.n_samples
        if self.n < 2:
            raise InputError(f"{source.path}: KING needs at least 2 samples, found {self.n}")
        self.band_rows = band_rows or (384 if self.device.type == "cpu" else 2048)
        # rows r0..r1 only (each against every earlier person): one part of plink2's --parallel split
        self.rows = (0, self.n) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= self.rows[0] <= self.rows[1] <= self.n:
            raise InputError(f"rows={rows}: not within 0..{self.n}")
        if memory_bytes is None:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                memory_bytes = int(free * 0.6)
            else:
                memory_bytes = 8 << 30
        self.memory_bytes = memory_bytes
        # Blocks in flight take _BLOCK_BYTES per genotype: at most a quarter of the budget.
        fit = (memory_bytes // 4) // (_BLOCK_BYTES * self.n) // 8 * 8
        self.block_variants = min(block_variants, max(fit, 256))
        self.progress = progress
        self.with_counts = with_counts
        self._mm = _int_matmul(self.device)
        self._pad = self.device.type == "cuda"  # cuBLASLt int8 needs multiples of 8

    # -- planning -----------------------------------------------------------------------
    def bands(self) -> list[tuple[int, int]]:
        b = self.band_rows
        lo, hi = self.rows
        return [(r0, min(r0 + b, hi)) for r0 in range(lo, hi, b)]

    def _band_bytes(self, r0: int, r1: int) -> int:
        return (r1 - r0) * r1 * self._n_acc() * 4  # int32 accumulators

    def _n_acc(self) -> int:
        return 6 if self.with_counts else 4

    def passes(self) -> list[list[tuple[int, int]]]:
        """Group bands so the accumulators of one group fit the budget left by the blocks in
        flight and by the band being finished (its counts in int64 and a few temporaries)."""
        finishing = min(self.band_rows, self.n) * self.n * 8 * (self._n_acc() + 4)
        budget = self.memory_bytes - self.block_variants * _BLOCK_BYTES * self.n - finishing
        groups, cur, used = [], [], 0
        for r0, r1 in self.bands():
            need = self._band_bytes(r0, r1)
            if cur and used + need > budget:
                groups.append(cur)
                cur, used = [], 0
            cur.append((r0, r1))
            used += need
        if cur:
            groups.append(cur)
        return groups

    # -- the computation ----------------------------------------------------------------
    def run(self) -> Iterator[KingBand]:
        """Yield one :class:`KingBand` per band, in row order."""
        passes = self.passes()
        n_var = self.source.count_variants(king_only=True)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            total = None if n_var is None else n_var * len(passes)
            bar = tqdm(total=total, unit="var", unit_scale=True, desc="KING", leave=False)
        try:
            for group in passes:
                yield from self._run_pass(group, bar)
        finally:
            if bar is not None:
                bar.close()

    def _run_pass(self, group, bar) -> Iterator[KingBand]:
        dev = self.device
        cols_needed = max(r1 for _, r1 in group)
        # The missing-call counts are allocated at the first block with a missing call.
        names = ["gg"] + (["hh"] if self.with_counts else [])
        missing_names = ["hmi", "mih", "q"] + (["mimi"] if self.with_counts else [])
        acc = {
            (r0, r1): {k: torch.zeros((r1 - r0, r1), dtype=torch.int32, device=dev) for k in names}
            for r0, r1 in group
        }
        het = torch.zeros(cols_needed, dtype=torch.int64, device=dev)
        sq = torch.zeros(cols_needed, dtype=torch.int64, device=dev)
        miss = torch.zeros(cols_needed, dtype=torch.int64, device=dev)
        n_var = 0
        scratch = None
        if dev.type == "cpu":
            scratch = torch.empty(max(r1 - r0 for r0, r1 in group) * cols_needed, dtype=torch.int32)
        blocks = self.source.iter_blocks(self.block_variants, king_only=True)
        for block in _prefetch(blocks):
            k = block.shape[1]
            if k == 0:
                continue
            # Blocks may come variant-major (a .bed's F-order): the CPU int8 product takes the
            # strided operands at full speed, so no transposed copy is made; CUDA gets row-major.
            g = torch.from_numpy(block[:cols_needed]).to(dev, non_blocking=True)
            if dev.type != "cpu":
                g = g.contiguous()
            # int8 bit tricks, no bool temporaries: g in {0, 1, 2, -127}
            mi = (g < 0).view(torch.int8)  # 1 where missing
            gz = g.clamp_min(0)  # missing -> 0, so products count both-called only
            h = gz & 1  # heterozygous
            a = gz >> 1  # homozygous ALT
            ones = torch.ones((k, 8), dtype=torch.int8, device=dev)
            het_b = self._rowsum(h, ones)
            het += het_b
            sq += 2 * self._rowsum(gz, ones) - het_b  # g^2 = H + 4A = 2g - H
            m_per = self._rowsum(mi, ones)
            miss += m_per
            n_var += k
            block_missing = bool(m_per.any())
            ops = {"g": gz, "h": h, "mi": mi, "a": a}
            chunks = [(0, k)]
            if block_missing:
                if "q" not in next(iter(acc.values())):
                    for (r0, r1), acc_b in acc.items():
                        acc_b.update({key: torch.zeros((r1 - r0, r1), dtype=torch.int32, device=dev)
                                      for key in missing_names})
                chunks = self._packable_chunks(mi, k, m_per, ones)
            packed = block_missing and chunks is not None
            if packed:
                ops["w"] = torch.add(a, h, alpha=_C)
            if self._pad:
                kp = -(-k // 8) * 8
                rp = max(-(-cols_needed // 8) * 8, 24)
                ops = {key: _pad_to(t, rp, kp) for key, t in ops.items()}
                chunks = [(k0, kp if k1 == k else k1) for k0, k1 in chunks or []]
            for (r0, r1), acc_b in acc.items():
                rows = slice(r0, r1)
                c1 = r1
                if self._pad:
                    rows = slice(r0, r0 + max(-(-(r1 - r0) // 8) * 8, 24))
                    c1 = max(-(-r1 // 8) * 8, 24)
                b = r1 - r0

                def mm(p, q, k0=None, k1=None, reuse=False):
                    x, y = ops[p][rows, k0:k1], ops[q][:c1, k0:k1].T
                    if reuse and scratch is not None:  # a product used at once: no fresh pages each time
                        return torch._int_mm(x, y, out=scratch[: x.shape[0] * c1].view(x.shape[0], c1))
                    return self._mm(x, y)[:b, :r1]

                acc_b["gg"] += mm("g", "g", reuse=True)
                if self.with_counts:
                    acc_b["hh"] += mm("h", "h")
                if not block_missing:
                    continue
                if self.with_counts:
                    acc_b["mimi"] += mm("mi", "mi")
                if packed:
                    for k0, k1 in chunks:
                        for key, (p, q) in (("hmi", ("w", "mi")), ("mih", ("mi", "w"))):
                            _add_packed(mm(p, q, k0, k1, reuse=True), acc_b[key], acc_b["q"])
                else:
                    hmi, mih = mm("h", "mi"), mm("mi", "h")
                    acc_b["hmi"] += hmi
                    acc_b["mih"] += mih
                    acc_b["q"] += hmi + mih + 4 * (mm("a", "mi") + mm("mi", "a"))
            if bar is not None:
                bar.update(k)
        if n_var == 0:
            raise InputError(
                f"{self.source.path}: no variants left for KING (only autosomes, XY and contig 0 are used; "
                "chrX, chrY and chrMT are dropped, as plink2 does)"
            )
        stats = {"het": het.cpu().numpy(), "sq": sq.cpu().numpy(), "miss": miss.cpu().numpy(), "n_var": n_var}
        for (r0, r1) in list(acc):
            a = acc.pop((r0, r1))
            yield self._finish(r0, r1, {k: t.cpu().numpy().astype(np.int64) for k, t in a.items()}, stats)

    def _packable_chunks(self, mi, k, m_per, ones) -> list[tuple[int, int]] | None:
        """Variant ranges of the block in which nobody has ``_C`` or more missing calls, so the
        packed product is exact in each; None when that takes ranges under 256 variants."""
        parts = 1
        while True:
            if parts == 1:
                if int(m_per.max()) < _C:
                    return [(0, k)]
            else:
                step = -(-k // parts // 8) * 8
                if step < 256:
                    return None
                chunks = [(c0, min(c0 + step, k)) for c0 in range(0, k, step)]
                if all(int(self._rowsum(mi[:, c0:c1], ones[: c1 - c0]).max()) < _C for c0, c1 in chunks):
                    return chunks
            parts *= 2

    def _rowsum(self, t: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
        # A product with a ones matrix: far faster than torch's int8 sums on CPU.
        if self.device.type == "cpu":
            return self._mm(t, ones)[:, 0].to(torch.int64)
        return t.sum(1, dtype=torch.int64)

    @staticmethod
    def _finish(r0, r1, a, stats) -> KingBand:
        het, sq, miss, n_var = stats["het"], stats["sq"], stats["miss"], stats["n_var"]
        het_r, het_c = het[r0:r1, None], het[None, :r1]
        # Het_i counted where j is called, and the reverse.
        if "q" not in a:  # no missing call in any block
            a = {**a, "hmi": 0, "mih": 0, "q": 0, "mimi": 0}
        het_i = het_r - a["hmi"]
        het_j = het_c - a["mih"]
        # 4*IBS0 + HET1_HOM2 + HET2_HOM1 = sum over both-called of (g_i - g_j)^2
        num = sq[r0:r1, None] + sq[None, :r1] - a["q"] - 2 * a["gg"]
        kin = _kinship(num, np.minimum(het_i, het_j))
        band = KingBand(r0, r1, kin, None, None, None, None, None)
        if "hh" in a:
            hh = a["hh"]
            band.hethet = hh
            band.het_row_hom_col = het_i - hh
            band.het_col_hom_row = het_j - hh
            ibs4 = num - band.het_row_hom_col - band.het_col_hom_row
            assert not (ibs4 & 3).any(), "internal error: IBS0 count not whole"
            band.ibs0 = ibs4 >> 2
            band.nsnp = n_var - miss[r0:r1, None] - miss[None, :r1] + a["mimi"]
        return band


def _prefetch(it: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Read the next genotype block in a background thread while this one computes."""
    from concurrent.futures import ThreadPoolExecutor

    sentinel = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="king-read") as pool:
        fut = pool.submit(next, it, sentinel)
        while True:
            block = fut.result()
            if block is sentinel:
                return
            fut = pool.submit(next, it, sentinel)
            yield block


def parallel_rows(n: int, part: int, parts: int) -> tuple[int, int]:
    """Rows ``[r0, r1)`` of part ``part`` (1-based) of ``parts`` in plink2's ``--parallel`` split of the
    lower triangle: boundary ``k`` is the smallest ``v`` with ``v (v - 1) >= n (n - 1) k / parts`` (integer
    division), so every part holds about the same number of pairs and the parts' files, concatenated in
    order, are the one-run file."""
    if not 1 <= part <= parts:
        raise InputError(f"--parallel {part} {parts}: the part must be between 1 and {parts}")

    def divide(target: int) -> int:  # smallest v >= 1 with v * (v - 1) >= target
        if target == 0:
            return 1
        v = int(math.isqrt(target))
        while (v - 1) * (v - 2) >= target:
            v -= 1
        while v * (v - 1) < target:
            v += 1
        return v

    total = n * (n - 1)
    return divide(total * (part - 1) // parts), divide(total * part // parts)


def king_matrix(source: GenotypeSource, **engine_kwargs) -> np.ndarray:
    """Full symmetric ``(n, n)`` float64 KING-robust matrix, diagonal 0.5."""
    n = source.n_samples
    out = np.empty((n, n), dtype=np.float64)
    for band in KingEngine(source, **engine_kwargs).run():
        out[band.r0 : band.r1, : band.r1] = band.kinship
    il = np.tril_indices(n, -1)
    out[il[1], il[0]] = out[il]
    np.fill_diagonal(out, 0.5)
    return out

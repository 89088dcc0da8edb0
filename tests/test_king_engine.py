"""The KING engine against an independent, direct implementation of the counts.

The direct version walks every pair with boolean masks, the textbook way; the
engine uses packed int8 matrix products. They must agree exactly, including on
heavy missingness, which drives the engine through its unpacked path (a person
with >= 127 missing calls in one block) and through mid-run flushes of its
packed accumulators.
"""

import numpy as np
import torch
import pytest

from conftest import FIXTURE
from seq2king.genetics.genotypes import MISSING, BedSource, GenotypeSource, SampleIds
from seq2king.genetics.king import KingEngine, king_matrix, kinship_from_counts


class ArraySource(GenotypeSource):
    """Genotypes held in memory, (n_samples, n_variants) int8."""

    def __init__(self, g):
        self.g = g
        self.path = "array"
        self.samples = SampleIds(iid=[f"s{i}" for i in range(len(g))])

    def count_variants(self, king_only=False):
        return self.g.shape[1]

    def iter_blocks(self, block_size=4096, king_only=False):
        for s in range(0, self.g.shape[1], block_size):
            yield np.ascontiguousarray(self.g[:, s:s + block_size])


def direct_king(g):
    n = len(g)
    called = g != MISSING
    het, hom0, hom2 = g == 1, g == 0, g == 2
    out = {k: np.zeros((n, n), np.int64) for k in ("hethet", "ibs0", "h1", "h2", "nsnp")}
    for i in range(n):
        both = called[i] & called
        out["nsnp"][i] = both.sum(1)
        out["hethet"][i] = (het[i] & het).sum(1)
        out["ibs0"][i] = ((hom0[i] & hom2) | (hom2[i] & hom0)).sum(1)
        out["h1"][i] = (het[i] & (hom0 | hom2)).sum(1)  # i het, j hom (called)
        out["h2"][i] = ((hom0[i] | hom2[i]) & het).sum(1)
    kin = kinship_from_counts(out["ibs0"], out["hethet"], out["h1"], out["h2"])
    return kin, out


@pytest.fixture(scope="module")
def heavy_missing():
    g = BedSource(FIXTURE).read_all(king_only=True)
    rng = np.random.default_rng(1)
    g = np.tile(g, (1, 3))  # ~14,500 variants: several 4096-blocks
    g[4, :4096][rng.random(4096) < 0.60] = MISSING  # >= 127 missing in 256 variants: unpacked path
    g[5, rng.random(g.shape[1]) < 0.30] = MISSING  # >= 127 missing per block: packed in shorter ranges
    g[6:12][rng.random((6, g.shape[1])) < 0.02] = MISSING  # packed, flushed mid-run
    return g


# under 1 MiB: the blocks in flight take the budget, so every band gets a pass of its own
@pytest.mark.parametrize("block,memory", [(4096, 1 << 30), (1000, 1 << 30), (4096, 20 * 64 * 24), (4096, 60_000)])
def test_engine_equals_direct_counts(heavy_missing, block, memory):
    kin_ref, counts = direct_king(heavy_missing)
    src = ArraySource(heavy_missing)
    n = len(heavy_missing)
    full = king_matrix(src, progress=False, block_variants=block, band_rows=20, memory_bytes=memory)
    il = np.tril_indices(n, -1)
    assert full[il].tobytes() == kin_ref[il].tobytes()
    engine = KingEngine(src, with_counts=True, band_rows=20, progress=False, block_variants=block,
                        memory_bytes=memory)
    assert (len(engine.passes()) > 1) == (memory < 1 << 20)
    for band in engine.run():
        rows = slice(band.r0, band.r1)
        low = np.tril(np.ones((band.r1 - band.r0, band.r1), bool), band.r0 - 1)
        assert np.array_equal(band.nsnp[low], counts["nsnp"][rows, : band.r1][low])
        assert np.array_equal(band.hethet[low], counts["hethet"][rows, : band.r1][low])
        assert np.array_equal(band.ibs0[low], counts["ibs0"][rows, : band.r1][low])
        assert np.array_equal(band.het_row_hom_col[low], counts["h1"][rows, : band.r1][low])


def test_no_het_person_gives_minus_inf_and_nan():
    g = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [1, 0, 1, 2], [0, 2, 2, 0]], dtype=np.int8)
    k = king_matrix(ArraySource(g), progress=False)
    assert np.isnan(k[1, 0])  # no hets on either side and no opposite homozygotes: 0/0
    assert np.isneginf(k[2, 0]) and np.isneginf(k[3, 2])
    # plink2 writes the x86 default NaN: sign bit set
    assert k[1, 0].tobytes() == bytes.fromhex("000000000000f8ff")


def test_clear_errors():
    from seq2king.errors import InputError

    with pytest.raises(InputError, match="at least 2 samples"):
        KingEngine(ArraySource(np.zeros((1, 10), np.int8)))
    with pytest.raises(InputError, match="block_variants"):
        KingEngine(ArraySource(np.zeros((3, 10), np.int8)), block_variants=100000)


def test_packed_decode_by_multiply_and_shift_is_floor_division():
    from seq2king.genetics.king import _C, _DIV_MUL, _DIV_SHIFT

    x = torch.arange(0, _C * 128, dtype=torch.int32)  # every value a pending packed product can hold
    assert torch.equal(torch.mul(x, _DIV_MUL).bitwise_right_shift(_DIV_SHIFT), torch.div(x, _C, rounding_mode="floor"))


def test_packed_product_adds_both_counts_in_place():
    from seq2king.genetics.king import _C, _add_packed

    rng = np.random.default_rng(3)
    g = torch.from_numpy(rng.integers(0, 3, (9, 300)).astype(np.int8))
    mi = torch.from_numpy((rng.random((11, 300)) < 0.3).astype(np.int8))
    h, a = g & 1, g >> 1
    prod = torch._int_mm(torch.cat([a + _C * h, torch.zeros((7, 300), dtype=torch.int8)]), mi.T.contiguous())[:9]
    hmi, q = torch.full((9, 11), 5, dtype=torch.int32), torch.full((9, 11), -2, dtype=torch.int32)
    _add_packed(prod, hmi, q)
    hm = h.int() @ mi.int().T
    assert torch.equal(hmi, 5 + hm)
    assert torch.equal(q, -2 + hm + 4 * (a.int() @ mi.int().T))


def test_packed_ranges_split_a_block_until_counts_fit():
    from seq2king.genetics.king import _C

    rng = np.random.default_rng(0)
    k = 4096
    g = np.zeros((30, k), np.int8)
    eng = KingEngine(ArraySource(g), progress=False)
    ones = torch.ones((k, 8), dtype=torch.int8)

    def chunks(rate_of_person_3):
        mi = torch.from_numpy((rng.random((30, k)) < 0.01).astype(np.int8))
        mi[3] = torch.from_numpy((rng.random(k) < rate_of_person_3).astype(np.int8))
        return mi, eng._packable_chunks(mi, k, eng._rowsum(mi, ones), ones)

    assert chunks(0.01)[1] == [(0, k)]
    mi, split = chunks(0.25)  # ~1,000 missing: 4096 / 16 = 256-variant ranges hold ~64
    assert len(split) > 1 and split[0][0] == 0 and split[-1][1] == k
    assert all(b == c for (_, b), (c, _) in zip(split, split[1:]))
    assert max(int(mi[:, a:b].sum(1).max()) for a, b in split) < _C
    assert chunks(0.6)[1] is None  # ~154 in any 256 variants: counted separately

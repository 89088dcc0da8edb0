"""KING-robust output is byte-identical to plink2 --make-king / --make-king-table."""

import numpy as np
import pytest

from conftest import DATA, FIXTURE, GOLDEN, run_cli, run_plink2
from seq2king.genetics.genotypes import BedSource, PgenSource, VcfSource
from seq2king.genetics.king import KingEngine, king_matrix
from seq2king.genetics.kingio import write_king_bands


def test_fixture_has_the_hard_cases():
    gold = np.fromfile(GOLDEN / "king_fixture.king.bin")
    ids = [ln.split()[1] for ln in open(GOLDEN / "king_fixture.king.id").read().splitlines()[1:]]
    n = len(ids)
    full = np.full((n, n), np.nan)
    full[np.tril_indices(n, -1)] = gold
    i = ids.index
    assert full[i("DUP_of_AFR_01"), i("AFR_01")] == pytest.approx(0.5, abs=0.01)
    assert full[i("CHILD_1x2_a"), i("AFR_02")] == pytest.approx(0.25, abs=0.03)
    assert full[i("CHILD_1x2_b"), i("CHILD_1x2_a")] == pytest.approx(0.25, abs=0.05)
    assert np.isneginf(full[i("NOHET"), : i("NOHET")]).all()
    missing = (BedSource(FIXTURE).read_all() < 0).mean()
    assert 0.005 < missing < 0.02
    chroms = set(BedSource(FIXTURE).variants.chrom)
    assert {"0", "X", "Y", "XY", "MT"} <= chroms


def test_triangle_bin_matches_golden_bytes(tmp_path):
    write_king_bands(KingEngine(BedSource(FIXTURE), progress=False).run(), tmp_path / "k",
                     BedSource(FIXTURE).samples)
    assert (tmp_path / "k.king.bin").read_bytes() == (GOLDEN / "king_fixture.king.bin").read_bytes()
    assert (tmp_path / "k.king.id").read_bytes() == (GOLDEN / "king_fixture.king.id").read_bytes()


def test_table_counts_match_golden_bytes(tmp_path):
    src = BedSource(FIXTURE)
    write_king_bands(KingEngine(src, with_counts=True, progress=False).run(), tmp_path / "k",
                     src.samples, table=True, matrix=False)
    assert (tmp_path / "k.kin0").read_bytes() == (GOLDEN / "king_fixture.kin0").read_bytes()


@pytest.mark.parametrize("band_rows,memory", [(7, 7 * 70 * 24), (16, None), (1000, None)])
def test_bands_and_passes_do_not_change_bytes(band_rows, memory):
    src = BedSource(FIXTURE)
    eng = KingEngine(src, band_rows=band_rows, memory_bytes=memory or (1 << 30), progress=False,
                     block_variants=512)
    if memory:
        assert len(eng.passes()) > 1
    full = king_matrix(src, band_rows=band_rows, memory_bytes=memory or (1 << 30), progress=False,
                       block_variants=512)
    tri = full[np.tril_indices(len(full), -1)]
    assert tri.tobytes() == (GOLDEN / "king_fixture.king.bin").read_bytes()


def test_bed_pgen_vcf_give_the_same_matrix():
    ref = king_matrix(BedSource(FIXTURE), progress=False)
    pgen = king_matrix(PgenSource(FIXTURE), progress=False)
    vcf = king_matrix(VcfSource(str(FIXTURE) + ".vcf.gz"), progress=False)
    assert ref.tobytes() == pgen.tobytes() == vcf.tobytes()


def test_multiallelic_and_haploid_vcf_match_plink2():
    full = king_matrix(VcfSource(DATA / "multiallelic.vcf"), progress=False)
    tri = full[np.tril_indices(len(full), -1)]
    assert tri.tobytes() == (GOLDEN / "multiallelic.king.bin").read_bytes()


@pytest.mark.parametrize("shape", ["triangle", "square", "square0"])
@pytest.mark.parametrize("encoding", ["bin", "bin4", "text"])
def test_every_form_matches_live_plink2(plink2, tmp_path, shape, encoding):
    mod = [] if encoding == "text" else [encoding]
    run_plink2(plink2, "--bfile", FIXTURE, "--make-king", shape, *mod, "--out", tmp_path / "ref")
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "ours", "--shape", shape,
                  "--encoding", encoding)
    assert res.returncode == 0, res.stderr
    ext = ".king" if encoding == "text" else ".king.bin"
    assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    assert (tmp_path / "ours.king.id").read_bytes() == (tmp_path / "ref.king.id").read_bytes()


@pytest.mark.parametrize("counts", [True, False])
def test_table_matches_live_plink2(plink2, tmp_path, counts):
    run_plink2(plink2, "--bfile", FIXTURE, "--make-king-table", *(["counts"] if counts else []),
               "--out", tmp_path / "ref")
    args = ["king", "--bfile", FIXTURE, "--out", tmp_path / "ours", "--table"]
    res = run_cli(*args, *([] if counts else ["--table-proportions"]))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ours.kin0").read_bytes() == (tmp_path / "ref.kin0").read_bytes()


def test_pgen_and_vcf_ids_match_live_plink2(plink2, tmp_path):
    for flag, path in (("--pfile", FIXTURE), ("--vcf", f"{FIXTURE}.vcf.gz")):
        run_plink2(plink2, flag, path, "--make-king", "triangle", "bin", "--out", tmp_path / "ref")
        res = run_cli("king", flag, path, "--out", tmp_path / "ours")
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "ours.king.bin").read_bytes() == (tmp_path / "ref.king.bin").read_bytes()
        assert (tmp_path / "ours.king.id").read_bytes() == (tmp_path / "ref.king.id").read_bytes()


def test_fresh_simulation_matches_live_plink2(plink2, tmp_path):
    """A cohort simulated now (not the committed one), with text output and the table."""
    res = run_cli("simulate", "--samples", "150", "--length", "2e6", "--seed", "3",
                  "--out", tmp_path / "sim", "--workers", "1")
    assert res.returncode == 0, res.stderr
    run_plink2(plink2, "--bfile", tmp_path / "sim", "--make-king", "triangle",
               "--make-king-table", "counts", "--out", tmp_path / "ref")
    res = run_cli("king", "--bfile", tmp_path / "sim", "--out", tmp_path / "ours",
                  "--encoding", "text", "--table")
    assert res.returncode == 0, res.stderr
    for ext in (".king", ".kin0", ".king.id"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes(), ext

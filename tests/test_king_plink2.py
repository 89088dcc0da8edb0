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


@pytest.mark.parametrize("threshold", ["0.0442", "0.1", "-0.05"])
def test_keep_remove_and_table_filter_match_live_plink2(plink2, tmp_path, threshold):
    """--keep (FID IID), --remove and --king-table-filter: the same people and pairs as plink2, byte for byte,
    for the matrix and the .kin0 alone."""
    fam = [ln.split()[:2] for ln in open(f"{FIXTURE}.fam")]
    (tmp_path / "keep.txt").write_text("".join(f"{f} {i}\n" for k, (f, i) in enumerate(fam) if k % 3 != 1))
    (tmp_path / "remove.txt").write_text("#FID\tIID\n" + "".join(f"{f}\t{i}\n" for f, i in fam[::5]))
    sel = ["--keep", tmp_path / "keep.txt", "--remove", tmp_path / "remove.txt"]
    run_plink2(plink2, "--bfile", FIXTURE, "--make-king-table", "counts", "--king-table-filter", threshold, *sel,
               "--out", tmp_path / "ref")
    run_plink2(plink2, "--bfile", FIXTURE, "--make-king", "square", "bin", *sel, "--out", tmp_path / "refm")
    res = run_cli("king", "--bfile", FIXTURE, "--table-only", "--king-table-filter", threshold, *sel,
                  "--out", tmp_path / "ours")
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "ours.king.bin").exists()
    ours, ref = (tmp_path / "ours.kin0").read_bytes(), (tmp_path / "ref.kin0").read_bytes()
    assert ours == ref and ref.count(b"\n") > 2
    res = run_cli("king", "--bfile", FIXTURE, "--shape", "square", *sel, "--out", tmp_path / "oursm")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "oursm.king.bin").read_bytes() == (tmp_path / "refm.king.bin").read_bytes()
    ids = (tmp_path / "oursm.king.id").read_text()
    assert ids == (tmp_path / "refm.king.id").read_text() and len(ids.splitlines()) == 1 + sum(k % 3 != 1 and k % 5 != 0 for k in range(len(fam)))


def test_degree_column_classifies_the_fixtures_relatives(tmp_path):
    """--degree: KING's classes from kinship and IBS0; the fixture's duplicate, parents and siblings."""
    res = run_cli("king", "--bfile", FIXTURE, "--table-only", "--degree", "--out", tmp_path / "k")
    assert res.returncode == 0, res.stderr
    rows = [ln.split("\t") for ln in (tmp_path / "k.kin0").read_text().splitlines()]
    assert rows[0][-2:] == ["KINSHIP", "INFTYPE"]
    kind = {(r[1], r[3]): r[-1] for r in rows[1:]}
    assert kind[("DUP_of_AFR_01", "AFR_01")] == "Dup/MZ"
    assert kind[("CHILD_1x2_a", "AFR_02")] == kind[("CHILD_1x2_b", "AFR_03")] == "PO"
    assert kind[("CHILD_1x2_b", "CHILD_1x2_a")] == "FS"
    for r in rows[1:]:  # every class agrees with its kinship band and IBS0 share
        k, ibs0 = float(r[7]), int(r[6]) / int(r[4])
        want = ("Dup/MZ" if k > 2 ** -1.5 else ("PO" if ibs0 < 0.0012 else "FS") if k >= 2 ** -2.5 else
                "2nd" if k >= 2 ** -3.5 else "3rd" if k >= 2 ** -4.5 else "UN")
        assert r[-1] == want, r
    assert sum(r[-1] == "UN" for r in rows[1:]) > 100
    # a PO threshold of 0: every first-degree pair is full siblings
    res = run_cli("king", "--bfile", FIXTURE, "--table-only", "--degree", "--po-ibs0", "0", "--out", tmp_path / "f")
    kinds = {ln.split("\t")[-1] for ln in (tmp_path / "f.kin0").read_text().splitlines()[1:]}
    assert "PO" not in kinds and "FS" in kinds


@pytest.mark.parametrize("cutoff", ["0", "0.0442", "0.2"])
def test_king_cutoff_matches_live_plink2(plink2, tmp_path, cutoff):
    """--king-cutoff: plink2's greedy (the partner of the first one-partner person, else the first with most
    partners) gives the same kept and removed lists, byte for byte, with and without --keep."""
    fam = [ln.split()[:2] for ln in open(f"{FIXTURE}.fam")]
    (tmp_path / "keep.txt").write_text("".join(f"{f} {i}\n" for k, (f, i) in enumerate(fam) if k % 4))
    for sel in ([], ["--keep", tmp_path / "keep.txt"]):
        run_plink2(plink2, "--bfile", FIXTURE, "--king-cutoff", cutoff, *sel, "--out", tmp_path / "ref")
        res = run_cli("king", "--bfile", FIXTURE, "--king-cutoff", cutoff, *sel, "--out", tmp_path / "ours")
        assert res.returncode == 0, res.stderr
        for ext in (".king.cutoff.in.id", ".king.cutoff.out.id"):
            assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes(), (sel, ext)
        assert not (tmp_path / "ours.king.bin").exists()
    removed = len((tmp_path / "ours.king.cutoff.out.id").read_text().splitlines()) - 1
    assert removed >= 3  # the fixture's duplicate and two children at least


@pytest.mark.parametrize("cutoff", ["0", "0.0442", "0.2"])
def test_king_cutoff_from_an_existing_matrix_matches_live_plink2(plink2, tmp_path, cutoff):
    """--king-cutoff PREFIX MAX reads PREFIX.king.bin + .king.id instead of computing KING (plink2's form):
    the same lists as plink2 given the same files, byte for byte; a matrix of other people is one line."""
    prefix = GOLDEN / "king_fixture"  # plink2's own matrix of the fixture
    run_plink2(plink2, "--bfile", FIXTURE, "--king-cutoff", prefix, cutoff, "--out", tmp_path / "ref")
    res = run_cli("king", "--bfile", FIXTURE, "--king-cutoff", prefix, cutoff, "--out", tmp_path / "ours")
    assert res.returncode == 0, res.stderr
    for ext in (".king.cutoff.in.id", ".king.cutoff.out.id"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes(), ext
    fam = [ln.split()[:2] for ln in open(f"{FIXTURE}.fam")]
    (tmp_path / "keep.txt").write_text("".join(f"{f} {i}\n" for f, i in fam[:40]))
    res = run_cli("king", "--bfile", FIXTURE, "--keep", tmp_path / "keep.txt", "--king-cutoff", prefix, cutoff,
                  "--out", tmp_path / "bad")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "its 64 people are not the 40 loaded" in lines[0], res.stderr
    assert not list(tmp_path.glob("bad*"))


def test_prune_related_follows_plink2s_order():
    from seq2king.genetics.relatives import prune_related

    # a path 0-1-2: person 0 has one partner, so its partner 1 goes and 0 and 2 stay
    assert prune_related(4, np.array([1, 2]), np.array([0, 1])).tolist() == [False, True, False, False]
    # a triangle 0-1-2 and a star around 5: no one has a single partner at first; 5 (most partners) goes,
    # then 3, 4, 6 are free, and in the triangle the first of the largest (0) goes, then 1's partner 2
    i, j = np.array([1, 2, 2, 5, 5, 5]), np.array([0, 0, 1, 3, 4, 6])
    assert np.flatnonzero(prune_related(7, i, j)).tolist() == [0, 2, 5]
    assert not prune_related(3, np.zeros(0, int), np.zeros(0, int)).any()


def test_parallel_parts_match_live_plink2_and_concatenate_to_the_whole(plink2, tmp_path):
    """--parallel K 3: each part's matrix and table equal plink2's part, and the parts concatenated in
    order are the one-run files (the table's header in part 1 only)."""
    for k in (1, 2, 3):
        run_plink2(plink2, "--bfile", FIXTURE, "--make-king", "triangle", "bin", "--make-king-table", "counts",
                   "--parallel", k, 3, "--out", tmp_path / "ref")
        res = run_cli("king", "--bfile", FIXTURE, "--table", "--parallel", k, 3, "--out", tmp_path / "ours")
        assert res.returncode == 0, res.stderr
        for ext in (f".king.bin.{k}", f".kin0.{k}"):
            assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes(), ext
    whole = b"".join((tmp_path / f"ours.king.bin.{k}").read_bytes() for k in (1, 2, 3))
    assert whole == (GOLDEN / "king_fixture.king.bin").read_bytes()
    table = b"".join((tmp_path / f"ours.kin0.{k}").read_bytes() for k in (1, 2, 3))
    assert table == (GOLDEN / "king_fixture.kin0").read_bytes()
    res = run_cli("king", "--bfile", FIXTURE, "--shape", "square", "--parallel", 1, 2, "--out", tmp_path / "sq")
    assert res.returncode == 2 and "triangle" in res.stderr


def test_parallel_rows_split_pairs_evenly():
    from seq2king.genetics.king import parallel_rows

    n, parts = 100_003, 7
    bounds = [parallel_rows(n, k, parts) for k in range(1, parts + 1)]
    assert bounds[0][0] == 1 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    pairs = [(r1 * (r1 - 1) - r0 * (r0 - 1)) // 2 for r0, r1 in bounds]
    assert sum(pairs) == n * (n - 1) // 2
    assert max(pairs) - min(pairs) < 2 * n  # equal up to one row's pairs


def test_submit_runs_the_parts_through_submitit_and_joins_them(tmp_path):
    """--submit 3: plink2's three parts as submitit jobs (local processes here, a SLURM array on a cluster),
    joined into the one-run files byte for byte; the parts are gone."""
    res = run_cli("king", "--bfile", FIXTURE, "--table", "--submit", 3, "--submit-cluster", "local",
                  "--out", tmp_path / "k")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "k.king.bin").read_bytes() == (GOLDEN / "king_fixture.king.bin").read_bytes()
    assert (tmp_path / "k.kin0").read_bytes() == (GOLDEN / "king_fixture.kin0").read_bytes()
    assert not list(tmp_path.glob("k.king.bin.*")) and not list(tmp_path.glob("k.kin0.*"))
    assert "submitted 3 parts (local)" in res.stdout
    res = run_cli("king", "--bfile", FIXTURE, "--submit", 2, "--parallel", 1, 2, "--out", tmp_path / "x")
    assert res.returncode == 2 and res.stderr.strip().startswith("seq2king: error: --submit")

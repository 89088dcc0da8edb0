"""Reading every KING form back gives the same matrix; plink2's number format."""

import numpy as np
import pytest

from conftest import FIXTURE, GOLDEN
from seq2king.genetics.genotypes import BedSource
from seq2king.genetics.king import KingEngine
from seq2king.genetics.kingio import format_g6, read_king, write_king_bands


@pytest.fixture(scope="module")
def reference():
    km = read_king(GOLDEN / "king_fixture.king.bin", check_finite=False)
    return km


def test_golden_reads_with_ids(reference):
    assert reference.values.shape == (64, 64)
    assert reference.ids[0] == "AFR_01" and reference.ids[-1] == "NOHET"
    assert np.array_equal(reference.values, reference.values.T, equal_nan=True)
    assert (np.diag(reference.values) == 0.5).all()


@pytest.mark.parametrize("shape", ["triangle", "square", "square0"])
@pytest.mark.parametrize("encoding", ["bin", "bin4", "text"])
def test_round_trip_every_form(tmp_path, reference, shape, encoding):
    src = BedSource(FIXTURE)
    write_king_bands(KingEngine(src, progress=False).run(), tmp_path / "k", src.samples,
                     shape=shape, encoding=encoding)
    ext = ".king" if encoding == "text" else ".king.bin"
    back = read_king(tmp_path / f"k{ext}", check_finite=False)
    assert back.ids == reference.ids
    if encoding == "bin":
        assert back.values.tobytes() == reference.values.tobytes()
    else:  # float32 or 6 significant digits
        finite = np.isfinite(reference.values)
        assert np.allclose(back.values[finite], reference.values[finite], rtol=1e-5, atol=1e-7)
        assert np.array_equal(np.isneginf(back.values), np.isneginf(reference.values))


def test_kin0_npy_csv_tsv(tmp_path, reference):
    src = BedSource(FIXTURE)
    write_king_bands(KingEngine(src, with_counts=True, progress=False).run(), tmp_path / "k",
                     src.samples, table=True, matrix=False)
    kin0 = read_king(tmp_path / "k.kin0", check_finite=False)
    order = [kin0.ids.index(x) for x in reference.ids]
    fin = np.isfinite(reference.values)
    assert np.allclose(kin0.values[np.ix_(order, order)][fin], reference.values[fin], atol=1e-6)

    sub = reference.values[:10, :10]
    ids = reference.ids[:10]
    np.save(tmp_path / "m.npy", sub)
    (tmp_path / "m.king.id").write_text("#IID\n" + "\n".join(ids) + "\n")
    npy = read_king(tmp_path / "m.npy")
    assert npy.ids == ids and npy.values.tobytes() == sub.tobytes()
    for sep, name in ((",", "m.csv"), ("\t", "m.tsv")):
        rows = [sep.join(["sample", *ids])] + [sep.join([i, *map(repr, r)]) for i, r in zip(ids, sub.tolist())]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        m = read_king(tmp_path / name)
        assert m.ids == ids and np.array_equal(m.values, sub)


def test_king_programs_own_kin0(tmp_path):
    (tmp_path / "king.kin0").write_text(
        "FID1\tID1\tFID2\tID2\tN_SNP\tHetHet\tIBS0\tKinship\n"
        "f\ta\tf\tb\t100\t0.1\t0.01\t0.25\n"
        "f\ta\tf\tc\t100\t0.1\t0.01\t-0.01\n"
        "f\tb\tf\tc\t100\t0.1\t0.01\t0.02\n")
    km = read_king(tmp_path / "king.kin0")
    assert km.ids == ["b", "a", "c"]
    assert km.values[1, 0] == 0.25 and km.values[0, 2] == 0.02 and km.values[2, 1] == -0.01


@pytest.mark.parametrize("x,text", [
    (-0.1153125, "-0.115312"),  # plink2 rounds ties to even; %.6g would give -0.115313
    (-0.1084375, "-0.108438"),
    (0.25, "0.25"),
    (0.0, "0"),
    (-0.0, "0"),  # plink2 tests x < 0, which -0.0 is not
    (1.23456789e-5, "1.23457e-05"),
    (-3e-7, "-3e-07"),
    (0.000123456, "0.000123456"),
    (float("-inf"), "-inf"),
    (float("nan"), "nan"),
    (0.5, "0.5"),
])
def test_format_g6_matches_plink2(x, text):
    assert format_g6(x) == text


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mode):
    """Files written atomically get what a plain open() would give under the umask (plink2's outputs do),
    not mkstemp's 0600; the command line's KING output too."""
    import os
    import stat

    from conftest import FIXTURE, run_cli

    from seq2king.fileio import write_text

    old = os.umask(umask)
    try:
        write_text(tmp_path / "x.txt", "a\n")
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("a\n")
        res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "k")
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
    for name in ("k.king.bin", "k.king.id"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name

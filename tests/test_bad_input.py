"""Bad input: one clear line naming the file and the problem, exit 2, no traceback,
and no output file left behind."""

import shutil

import numpy as np
import pytest

from conftest import FIXTURE, run_cli


def copy_bfile(tmp_path, name="d"):
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(f"{FIXTURE}{ext}", tmp_path / f"{name}{ext}")
    return tmp_path / name


def assert_clean_failure(res, *needles, out_dir=None):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("seq2king: error: ")
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if out_dir is not None:
        left = [p.name for p in out_dir.iterdir() if p.name.startswith(("out", ".out"))]
        assert left == [], left


def king(tmp_path, prefix):
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    return run_cli("king", "--bfile", prefix, "--out", out / "out", "--table"), out


def test_truncated_bed(tmp_path):
    prefix = copy_bfile(tmp_path)
    data = (tmp_path / "d.bed").read_bytes()
    (tmp_path / "d.bed").write_bytes(data[: len(data) // 2])
    res, out = king(tmp_path, prefix)
    assert_clean_failure(res, "d.bed", "truncated", out_dir=out)


def test_fam_line_count_mismatch(tmp_path):
    prefix = copy_bfile(tmp_path)
    lines = (tmp_path / "d.fam").read_text().splitlines()
    (tmp_path / "d.fam").write_text("\n".join(lines[:-3]) + "\n")
    res, out = king(tmp_path, prefix)
    assert_clean_failure(res, "d.bed", "d.fam", out_dir=out)


def test_bim_line_count_mismatch(tmp_path):
    prefix = copy_bfile(tmp_path)
    lines = (tmp_path / "d.bim").read_text().splitlines()
    (tmp_path / "d.bim").write_text("\n".join(lines + lines[:5]) + "\n")
    res, out = king(tmp_path, prefix)
    assert_clean_failure(res, "d.bim", out_dir=out)


def test_duplicate_sample_ids(tmp_path):
    prefix = copy_bfile(tmp_path)
    lines = (tmp_path / "d.fam").read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split()[1], lines[2].split()[1])
    (tmp_path / "d.fam").write_text("\n".join(lines) + "\n")
    res, out = king(tmp_path, prefix)
    assert_clean_failure(res, "d.fam", "duplicate sample ID", lines[2].split()[1], out_dir=out)


def test_vcf_without_samples(tmp_path):
    vcf = tmp_path / "nosamples.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "1\t100\t.\tA\tG\t.\t.\t.\n")
    out = tmp_path / "results"
    out.mkdir()
    res = run_cli("king", "--vcf", vcf, "--out", out / "out")
    assert_clean_failure(res, "nosamples.vcf", "no samples", out_dir=out)


def test_missing_file(tmp_path):
    res = run_cli("king", "--bfile", tmp_path / "nothere", "--out", tmp_path / "out")
    assert_clean_failure(res, "nothere.bed", "not found")


def write_king_bin(tmp_path, n_ids, n_values):
    (tmp_path / "k.king.id").write_text("#IID\n" + "".join(f"s{i}\n" for i in range(n_ids)))
    np.arange(n_values, dtype="<f8").tofile(tmp_path / "k.king.bin")
    return tmp_path / "k.king.bin"


def test_king_bin_size_does_not_fit_ids(tmp_path):
    path = write_king_bin(tmp_path, 5, 7)  # 5 people need 10 (triangle) or 25 (square)
    res = run_cli("inspect", path)
    assert_clean_failure(res, "k.king.bin", "does not fit the 5 IDs")


def test_king_bin_that_fits_reads(tmp_path):
    path = write_king_bin(tmp_path, 5, 10)
    res = run_cli("inspect", path)
    assert res.returncode == 0, res.stderr
    assert "5 people, 10 pairs" in res.stdout


def csv_matrix(tmp_path, values, ids=None, name="m.csv"):
    n = len(values)
    ids = ids or [f"s{i}" for i in range(n)]
    rows = [",".join(ids)] + [",".join(str(v) for v in row) for row in values]
    (tmp_path / name).write_text("\n".join(rows) + "\n")
    return tmp_path / name


def test_non_square_csv(tmp_path):
    path = csv_matrix(tmp_path, [[0.5, 0.1, 0.0], [0.1, 0.5, 0.0]])
    assert_clean_failure(run_cli("inspect", path), "m.csv", "square")


def test_asymmetric_csv(tmp_path):
    path = csv_matrix(tmp_path, [[0.5, 0.1, 0.0], [0.2, 0.5, 0.0], [0.0, 0.0, 0.5]])
    assert_clean_failure(run_cli("inspect", path), "m.csv", "not symmetric", "row 1, column 2")


def test_nan_in_csv(tmp_path):
    path = csv_matrix(tmp_path, [[0.5, "nan", 0.0], ["nan", 0.5, 0.0], [0.0, 0.0, 0.5]])
    assert_clean_failure(run_cli("inspect", path), "m.csv", "NaN")


def test_nan_in_king_bin(tmp_path):
    (tmp_path / "k.king.id").write_text("#IID\na\nb\nc\n")
    np.array([0.1, np.nan, 0.0], dtype="<f8").tofile(tmp_path / "k.king.bin")
    assert_clean_failure(run_cli("inspect", tmp_path / "k.king.bin"), "k.king.bin", "NaN", "row 3, column 1")


@pytest.fixture
def good_csv(tmp_path):
    return csv_matrix(tmp_path, [[0.5, 0.1, 0.0], [0.1, 0.5, 0.0], [0.0, 0.0, 0.5]], ids=["a", "b", "c"])


@pytest.mark.parametrize("text,needle", [
    ("person\tsuperpopulation\na\tAFR\nb\tEUR\nc\tEAS\n", "no sample ID column"),
    ("sample\tpop\na\tAFR\nb\tEUR\nc\tEAS\n", "no label column 'superpopulation'"),
    ("sample\tsuperpopulation\na\tAFR\nb\tEUR\nc\tEAS\nzz\tSAS\n", "'zz' is not in the genotype data"),
])
def test_bad_labels_file(tmp_path, good_csv, text, needle):
    (tmp_path / "l.tsv").write_text(text)
    res = run_cli("inspect", good_csv, "--labels", tmp_path / "l.tsv")
    assert_clean_failure(res, "l.tsv", needle)


def test_labels_joined_by_id_not_row_order(tmp_path, good_csv):
    (tmp_path / "l.tsv").write_text("Sample name\tSuperpopulation code\nc\tEAS\na\tAFR\nb\tAFR\n")
    res = run_cli("inspect", good_csv, "--labels", tmp_path / "l.tsv")
    assert res.returncode == 0, res.stderr
    assert "groups: AFR 2, EAS 1" in res.stdout


def test_bad_simulate_model(tmp_path):
    res = run_cli("simulate", "--model", "NoSuchModel", "--samples", "10", "--out", tmp_path / "x")
    assert_clean_failure(res, "NoSuchModel", "AmericanAdmixture_4B18")
    assert list(tmp_path.iterdir()) == []


def test_bim_short_line_named(tmp_path):
    # 5 + 7 columns: the totals match a 6-column file, so the fast column-wise read must not take it
    prefix = copy_bfile(tmp_path)
    lines = (tmp_path / "d.bim").read_text().splitlines()
    first = lines[0].split()
    lines[3] = "\t".join(first[:5])
    lines[4] = "\t".join(lines[4].split() + ["extra"])
    (tmp_path / "d.bim").write_text("\n".join(lines) + "\n")
    res, out = king(tmp_path, prefix)
    assert_clean_failure(res, "d.bim", "line 4 has 5 columns", out_dir=out)


def test_bim_fast_and_line_reads_agree(tmp_path):
    from seq2king.genetics.genotypes import _read_bim

    rows = [["1", "rs1", "0", "100", "A", "G"], ["2", "rs2", "0.5", "2e3", "C", "T"], ["X", "rs3", "0", "7", "G", "A"]]
    regular = tmp_path / "regular.bim"
    regular.write_text("\r\n".join("\t".join(r) for r in rows[:1] + rows[2:]) + "\r\n")
    odd = tmp_path / "odd.bim"  # a non-integer position and a blank line: read line by line
    odd.write_text("\n".join("\t".join(r) for r in rows[:2]) + "\n\n" + "\t".join(rows[2]) + "\n")
    v, w = _read_bim(regular), _read_bim(odd)
    assert list(v.chrom) == ["1", "X"] and list(v.pos) == [100, 7] and list(v.alt) == ["A", "G"]
    assert list(w.chrom) == ["1", "2", "X"] and list(w.pos) == [100, 2000, 7] and list(w.ref) == ["G", "T", "A"]
    assert v.chrom.dtype.kind == w.chrom.dtype.kind == "U"


def test_keep_file_missing_or_leaving_too_few(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    res = run_cli("king", "--bfile", FIXTURE, "--keep", tmp_path / "nope.txt", "--out", out / "out")
    assert_clean_failure(res, "--keep", "nope.txt", "not found", out_dir=out)
    (tmp_path / "one.txt").write_text("FAFR AFR_01\nNOBODY X\n")
    res = run_cli("king", "--bfile", FIXTURE, "--keep", tmp_path / "one.txt", "--out", out / "out")
    assert_clean_failure(res, "one.txt", "1 of", "remain", out_dir=out)
    (tmp_path / "bad.txt").write_text("#FID\tSEX\nFAFR\t1\n")
    res = run_cli("king", "--bfile", FIXTURE, "--remove", tmp_path / "bad.txt", "--out", out / "out")
    assert_clean_failure(res, "--remove", "bad.txt", "no IID column", out_dir=out)

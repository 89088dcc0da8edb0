"""Simulated traits for the confounding audit: the liability model, ascertainment, the files."""

import numpy as np
import pytest
from bed_reader import to_bed

from conftest import run_cli
from seq2king.errors import InputError
from seq2king.genetics.genotypes import BedSource, SampleIds
from seq2king.genetics.traits import TraitSpec, read_phenotype, simulate_trait


def two_populations(n=400, m=3000, seed=0):
    """Population A and B with allele frequencies drawn apart (Balding-Nichols, F = 0.1)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.5, m)
    f = 0.1
    pops, g = [], []
    for name in ("A", "B"):
        q = np.clip(rng.beta(p * (1 - f) / f, (1 - p) * (1 - f) / f), 0.01, 0.99)
        g.append((rng.random((n // 2, m)) < q).astype(np.int8) + (rng.random((n // 2, m)) < q))
        pops += [name] * (n // 2)
    return np.concatenate(g), pops


def test_liability_has_the_heritability_and_the_causal_effects():
    g, pops = two_populations()
    t = simulate_trait(g, TraitSpec(h2=0.7, causal=200, binary=False, seed=3), pops)
    assert len(t.causal) == len(set(t.causal)) == 200 and np.all(np.diff(t.causal) > 0)
    assert np.isclose(t.genetic.var(), 0.7)
    assert abs((t.liability - t.genetic).var() - 0.3) < 0.06  # environment N(0, 0.3), n = 400
    # the written effects are per ALT allele: they rebuild the genetic value up to its mean
    rebuilt = g[:, t.causal] @ t.effects
    assert np.allclose(rebuilt - rebuilt.mean(), t.genetic - t.genetic.mean())
    again = simulate_trait(g, TraitSpec(h2=0.7, causal=200, binary=False, seed=3), pops)
    other = simulate_trait(g, TraitSpec(h2=0.7, causal=200, binary=False, seed=4), pops)
    assert np.array_equal(again.liability, t.liability) and not np.array_equal(other.causal, t.causal)


def test_binary_trait_prevalence_and_population_shift():
    g, pops = two_populations()
    t = simulate_trait(g, TraitSpec(h2=0.5, causal=100, prevalence=0.3, shift={"A": 2.0}), pops)
    assert set(np.unique(t.values)) == {0.0, 1.0} and abs(t.values.mean() - 0.3) < 0.01
    a = np.asarray(pops) == "A"
    assert t.values[a].mean() > 3 * t.values[~a].mean()  # the shift, not genetics, makes A the cases


@pytest.mark.parametrize("share", [0.7, 0.9])
def test_ascertainment_makes_the_population_rule_score_the_share(share):
    g, pops = two_populations()
    t = simulate_trait(g, TraitSpec(h2=0.7, causal=100, ascertain=("A", share)), pops)
    kept = ~np.isnan(t.values)
    a = (np.asarray(pops) == "A")[kept]
    case = t.values[kept] == 1
    assert abs((a == case).mean() - share) < 0.01
    assert abs(a[case].mean() - share) < 0.01 and abs((~a[~case]).mean() - share) < 0.01
    assert 100 < kept.sum() < len(pops)


def test_bad_specs_are_named():
    g, pops = two_populations(n=40, m=200)
    with pytest.raises(InputError, match="not in the labels"):
        simulate_trait(g, TraitSpec(ascertain=("C", 0.9), causal=10), pops)
    with pytest.raises(InputError, match="needs population labels"):
        simulate_trait(g, TraitSpec(shift={"A": 1.0}, causal=10))
    with pytest.raises(InputError, match="only .* polymorphic"):
        simulate_trait(np.zeros((10, 50), np.int8), TraitSpec(causal=10))
    with pytest.raises(InputError, match="binary"):
        simulate_trait(g, TraitSpec(binary=False, ascertain=("A", 0.9), causal=10), pops)


@pytest.fixture()
def cohort(tmp_path):
    g, pops = two_populations(n=300, m=2000, seed=1)
    iid = [f"{p}_{i}" for i, p in enumerate(pops)]
    prefix = tmp_path / "c"
    to_bed(f"{prefix}.bed", g, properties={"iid": iid, "fid": iid, "chromosome": ["1"] * g.shape[1],
                                           "bp_position": np.arange(1, g.shape[1] + 1)})
    (tmp_path / "c.labels.tsv").write_text("sample\tpopulation\n" + "".join(f"{i}\t{p}\n" for i, p in zip(iid, pops)))
    return prefix, pops


def test_trait_command_writes_files_that_read_back(tmp_path, cohort):
    prefix, pops = cohort
    res = run_cli("trait", "--bfile", prefix, "--causal", "50", "--shift", "A=1.5", "--ascertain", "A:0.85",
                  "--out", tmp_path / "t")
    assert res.returncode == 0, res.stderr
    src = BedSource(prefix)
    y = read_phenotype(tmp_path / "t.pheno.tsv", src.samples)
    kept = ~np.isnan(y)
    a = (np.asarray(pops) == "A")[kept]
    assert abs((a == (y[kept] == 1)).mean() - 0.85) < 0.01
    causal = (tmp_path / "t.causal.tsv").read_text().splitlines()
    assert causal[0].split("\t") == ["variant", "chrom", "pos", "alt", "alt_freq", "effect"] and len(causal) == 51


def test_trait_command_bad_input_one_line_no_files(tmp_path, cohort):
    prefix, _ = cohort
    for args, needle in ((["--ascertain", "C:0.9"], "population 'C' is not in the labels"),
                         (["--shift", "A=big"], "--shift 'A=big': expected POP=NUMBER"),
                         (["--causal", "5000"], "causal=5000: only")):
        res = run_cli("trait", "--bfile", prefix, *args, "--out", tmp_path / "bad")
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("bad", ".bad"))]


def test_read_phenotype_formats_and_errors(tmp_path):
    ids = SampleIds(iid=["a", "b", "c"], fid=["f", "f", "g"])
    plink = tmp_path / "p.txt"
    plink.write_text("#FID IID height weight\nf a 1.5 70\nf b -9 80\ng c 2.0 NA\n")
    assert np.array_equal(read_phenotype(plink, ids), [1.5, np.nan, 2.0], equal_nan=True)
    assert np.array_equal(read_phenotype(plink, ids, column="weight"), [70, 80, np.nan], equal_nan=True)
    tsv = tmp_path / "s.tsv"
    tsv.write_text("sample\tvalue\nc\t1\na\t0\n")
    assert np.array_equal(read_phenotype(tsv, ids), [0, np.nan, 1], equal_nan=True)
    for text, needle in (("sample\tvalue\nz\t1\n", "sample 'z' is not in the genotype data"),
                         ("sample\tvalue\na\t1\na\t0\n", "appears twice"),
                         ("sample\tvalue\na\tcase\n", "phenotype 'case' of sample 'a' is not a number"),
                         ("id\tvalue\na\t1\n", "no sample column"),
                         ("sample\tvalue\na\tNA\n", "no person in the data has a phenotype")):
        tsv.write_text(text)
        with pytest.raises(InputError, match=needle):
            read_phenotype(tsv, ids)
    with pytest.raises(InputError, match="no phenotype column 'bmi'"):
        read_phenotype(plink, ids, column="bmi")
    with pytest.raises(InputError, match="not found"):
        read_phenotype(tmp_path / "none.tsv", ids)

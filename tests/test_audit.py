"""The confounding audit: its statistics against scikit-learn and scipy, the scenario, and the task end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seq2king.audit.report import group_auroc, precision_at_k, shortcut_index
from conftest import read_wandb_records
from seq2king.errors import InputError
from test_train import ROOT, TINY_AUDIT, cache_dir, make_cfg, offline_wandb  # noqa: F401  (fixtures)

def test_within_population_auroc_is_sklearns_per_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(["A", "B", "C"], 60)
    y = rng.integers(0, 2, len(groups))
    score = y * 0.3 + rng.normal(size=len(groups)) + (groups == "A")
    out = group_auroc(score, y, groups)
    assert out["overall"] == pytest.approx(roc_auc_score(y, score), abs=1e-6)
    for g in "ABC":
        assert out["per_population"][g] == pytest.approx(roc_auc_score(y[groups == g], score[groups == g]), abs=1e-6)
    assert out["within_population"] == pytest.approx(np.mean([out["per_population"][g] for g in "ABC"]), abs=1e-9)
    # a population with one class only has no AUROC and is left out of the mean
    y2 = np.where(groups == "C", 1, y)
    assert "C" not in group_auroc(score, y2, groups)["per_population"]


def test_precision_at_k_and_its_p_value_against_scipy():
    from scipy.stats import fisher_exact

    m, k = 1000, 50
    causal = np.zeros(m, bool)
    causal[:20] = True
    ranked = np.r_[np.arange(5), np.arange(100, m)]  # 5 causal SNPs in the top 50
    out = precision_at_k(ranked, causal, k)
    assert (out["k"], out["hits"], out["value"], out["chance"]) == (50, 5, 0.1, 0.02)
    table = [[5, 45], [15, m - 50 - 15]]  # top-k x causal: one-sided Fisher = hypergeometric tail
    assert out["p_value"] == pytest.approx(fisher_exact(table, alternative="greater").pvalue, rel=1e-9)


def test_shortcut_index_sees_ancestry_informative_snps_first():
    fst = np.r_[np.full(10, 0.5), np.full(990, 0.05)]
    assert shortcut_index(np.arange(1000), fst, 10) == pytest.approx(0.5 / fst.mean())
    assert shortcut_index(np.arange(1000)[::-1], fst, 10) == pytest.approx(0.05 / fst.mean())


def test_two_populations_drift_as_asked(tmp_path):
    from bed_reader import open_bed

    from seq2king.genetics.simulate import simulate_two_populations

    simulate_two_populations(tmp_path / "c", samples=600, loci=2000, length=5e6, fst=(0.1, 0.4), seed=3)
    with open_bed(tmp_path / "c.bed") as bed:
        g = bed.read(dtype="int8")
        pops = np.array([i.split("_")[0] for i in bed.iid])
    # heterozygosity falls by (1 - F) from the ancestor: POP2 / POP1 = 0.6 / 0.9
    het = {p: (g[pops == p] == 1).mean() for p in ("POP1", "POP2")}
    assert het["POP2"] / het["POP1"] == pytest.approx(0.6 / 0.9, abs=0.04)
    assert (pops == "POP1").sum() == 300


def test_audit_end_to_end_detects_a_planted_shortcut(tmp_path, cache_dir):
    """A trait with no genetic effect, ascertained by population: the model learns the
    population, the report says so (high overall AUROC, within population at chance,
    ancestry-informative SNPs ranked first)."""
    from seq2king.audit.report import audit_report
    from seq2king.training import train

    cfg = make_cfg(tmp_path, cache_dir, *TINY_AUDIT, "data.scenario.h2=0.0", "model.l1=0.0", tiny=False)
    metrics = train(cfg)
    assert metrics["test/auroc"] > 0.8
    for name in ("predictions.csv", "importance.csv", "split.json", "metrics.json"):
        assert (tmp_path / name).exists(), name
    s = audit_report(tmp_path, wandb_log=True)  # offline W&B (the autouse fixture)
    runs = list((tmp_path / "analysis" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    import time

    for _ in range(20):  # W&B's service process writes the run file; give it time to land (once, in a full local run, the history was not there yet)
        logged = {}
        for rec in read_wandb_records(runs[0]):
            if rec.WhichOneof("record_type") == "history":
                logged.update({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in rec.history.item})
        if "audit/auroc/overall" in logged:
            break
        time.sleep(0.5)
    assert logged["audit/auroc/overall"] == pytest.approx(s["auroc"]["overall"])
    assert logged["audit/shortcut_index"] == pytest.approx(s["shortcut_index"])
    assert logged["analysis/importance_genome/format"] == "png"
    saved = json.loads((tmp_path / "analysis" / "audit.json").read_text())
    assert saved["auroc"]["overall"] == pytest.approx(s["auroc"]["overall"])
    assert s["ancestry_auroc"] > 0.8  # the scenario is confounded
    assert s["auroc"]["overall"] > 0.8
    assert 0.25 < s["auroc"]["within_population"] < 0.75
    # the null inside populations, read with its noise: the interval covers 0.5 and the verdict says so
    lo, hi = s["auroc"]["within_population_ci95"]
    assert lo < 0.5 < hi and s["auroc"]["within_population_verdict"] == "at chance"
    for pop, d in s["auroc"]["per_population_detail"].items():
        assert d["ci95"][0] <= d["auroc"] <= d["ci95"][1] and d["cases"] > 0 and d["controls"] > 0
    assert s["ancestry_auroc_within_population_verdict"] == "at chance"
    assert "shortcut" in s["shortcut_index_note"]
    assert s["shortcut_index"] > 1.2
    assert set(s["importance"]) == {"integrated_gradients", "input_x_gradient", "feature_permutation"}
    assert s["oracle_auroc"] is None  # h2 = 0: no genetic value to rank by
    assert s["precision_at_k"] is None  # and no causal SNP to find
    for png in ("importance_genome.png", "auroc.png"):
        assert (tmp_path / "analysis" / png).stat().st_size > 5000


@pytest.fixture(scope="module")
def ancestry_run(tmp_path_factory, cache_dir):
    """A small seq2king run on the tiny scenario's genotypes (for the seq2king correction)."""
    from seq2king.audit.scenario import load_scenario
    from seq2king.training import train
    from test_train import TINY

    files = load_scenario(samples=300, loci=400, length=3e6, causal=10, cache_dir=str(cache_dir))
    out = tmp_path_factory.mktemp("ancestry")
    cfg = make_cfg(out, cache_dir, *TINY, "data=plink", f"data.bfile={files.bfile}", "logger=none", tiny=False)
    train(cfg)
    return out


@pytest.mark.parametrize("correction", ["none", "pcs", "residualize", "adversarial", "balanced", "seq2king"])
@pytest.mark.parametrize("arch", ["logistic", "cnn"])
def test_each_correction_runs(tmp_path, cache_dir, correction, arch, request):
    from seq2king.training import train

    extra = [f"audit.correction={correction}", f"model.arch={arch}", "+trainer.fast_dev_run=true"]
    if correction == "seq2king":
        extra.append(f"audit.ancestry_run={request.getfixturevalue('ancestry_run')}")
    cfg = make_cfg(tmp_path, cache_dir, *TINY_AUDIT, *extra, tiny=False)
    metrics = train(cfg)
    assert 0 <= metrics["test/auroc"] <= 1
    imp = (tmp_path / "importance.csv").read_text().splitlines()
    assert imp[0] == "variant,chrom,pos,integrated_gradients,input_x_gradient,feature_permutation"
    assert len(imp) > 300


def test_seq2king_covariates_embed_every_audit_person(ancestry_run, cache_dir):
    from seq2king.audit.data import AuditDataModule

    dm = AuditDataModule(scenario=dict(samples=300, loci=400, length=3e6, causal=10), cache_dir=str(cache_dir),
                         correction="seq2king", ancestry_run=str(ancestry_run))
    dm.setup()
    cov = dm.covariates.numpy()
    assert cov.shape == (len(dm.ids), 10)
    train = dm.splits["train"]
    assert np.allclose(cov[train].std(0), 1, atol=1e-6)
    # the first embedding component separates the two populations
    pops = dm.populations
    c = np.corrcoef(cov[:, 0], pops == "POP1")[0, 1]
    assert abs(c) > 0.9


def test_bad_audit_input_is_named(tmp_path, cache_dir):
    from seq2king.audit.data import AuditDataModule, binary_phenotype
    from seq2king.audit.scenario import load_scenario

    with pytest.raises(InputError, match="data.source=plink needs data.phenotype=FILE"):
        AuditDataModule(source="plink", bfile="x")
    with pytest.raises(InputError, match="audit.correction='pca'"):
        AuditDataModule(correction="pca")
    with pytest.raises(InputError, match="binary phenotype"):
        binary_phenotype(np.array([0.5, 1.0, np.nan]), "p.tsv")
    assert list(binary_phenotype(np.array([1.0, 2.0, np.nan]), "p.tsv")[:2]) == [0.0, 1.0]
    files = load_scenario(samples=300, loci=400, length=3e6, causal=10, cache_dir=str(cache_dir))
    pheno = tmp_path / "q.tsv"
    pheno.write_text("FID\tIID\tq\n" + "".join(f"{i}\t{i}\t{k * 0.1}\n" for k, i in enumerate(
        open(files.bfile + ".fam").read().split()[1::6][:50])))
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=audit", "data.source=plink",
                        f"data.bfile={files.bfile}", f"data.phenotype={pheno}", "logger=none",
                        f"paths.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("seq2king: error")]
    assert len(err) == 1 and f"{pheno}: the audit needs a binary phenotype" in err[0]


def test_split_file_fixes_the_seq2king_split(tmp_path, cache_dir):
    from seq2king.data import Seq2KingDataModule

    def dm(**kw):
        return Seq2KingDataModule(simulation=dict(samples=120, length=2e6, seed=5), cache_dir=str(cache_dir),
                                  panel_size=16, min_len=4, max_len=24, **kw)

    ref = dm()
    ref.setup()
    ids = ref.cohort.ids
    given = {"train": ids[:80], "val": ids[80:100], "test": ids[100:115]}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(given))
    d = dm(split_file=str(path))
    d.setup()
    s = d.split_summary()
    assert sorted(s["train"] + s["panel"]) == sorted(given["train"])
    assert s["val"] == given["val"] and s["test"] == given["test"]
    path.write_text(json.dumps({**given, "test": ["nobody"]}))
    with pytest.raises(InputError, match="1 test ID\\(s\\) not in the cohort, e.g. 'nobody'"):
        dm(split_file=str(path)).setup()
    path.write_text(json.dumps({**given, "val": ids[:3]}))
    with pytest.raises(InputError, match="in more than one split"):
        dm(split_file=str(path)).setup()


def test_within_population_intervals_and_verdicts():
    """rank_auroc is sklearn's; a score with no signal inside populations is 'at chance' (its interval covers
    0.5), one that ranks cases first 'above', one that ranks them last 'below'; intervals widen as the minority
    class shrinks, as an ascertained study's does."""
    from seq2king.audit.intervals import paired_within_difference, rank_auroc, within_report

    rng = np.random.default_rng(3)
    groups = np.repeat(["POP1", "POP2"], 200)
    y = np.concatenate([rng.random(200) < 0.9, rng.random(200) < 0.1]).astype(int)  # 90% / 10% cases
    noise = rng.normal(size=400)
    assert rank_auroc(noise, y) == pytest.approx(roc_auc_score(y, noise), abs=1e-12)
    null = within_report(noise, y, groups, n_boot=500)
    assert null["within_verdict"] == "at chance" and null["within_ci95"][0] < 0.5 < null["within_ci95"][1]
    assert null["per_population"]["POP1"]["controls"] == int((y[:200] == 0).sum())
    good = within_report(noise + 2 * y, y, groups, n_boot=500)
    bad = within_report(noise - 2 * y, y, groups, n_boot=500)
    assert good["within_verdict"] == "above chance" and bad["within_verdict"] == "below chance"
    # the minority class sets the width: 20 of them give a wider interval than 100
    few = within_report(noise, np.where(np.arange(400) % 10 == 0, 1, 0), groups, n_boot=500)["within_ci95"]
    many = within_report(noise, np.where(np.arange(400) % 2 == 0, 1, 0), groups, n_boot=500)["within_ci95"]
    assert few[1] - few[0] > 1.5 * (many[1] - many[0])
    d = paired_within_difference(noise + 2 * y, noise, y, groups, n_boot=500)
    assert d["ci95"][0] > 0 and d["p_value"] < 0.01
    same = paired_within_difference(noise, noise, y, groups, n_boot=200)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]


def test_compare_pairs_corrections_with_the_uncorrected_job_and_summarises_over_seeds(tmp_path):
    """An audit sweep's table: each correction minus the uncorrected job of the same split on the same people
    (paired), and over split seeds each figure's mean and 95% t-interval."""
    from scipy.stats import t

    from seq2king.sweep_table import compare

    rng = np.random.default_rng(0)
    groups = np.repeat(["POP1", "POP2"], 100)
    within = {}
    for k, (corr, seed) in enumerate([(c, s) for s in (0, 1, 2) for c in ("none", "balanced")]):
        job = tmp_path / str(k)
        (job / ".hydra").mkdir(parents=True)
        (job / "analysis").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(f"- audit.correction={corr}\n- data.split_seed={seed}\n")
        y = (np.arange(200) % 3 == 0).astype(int)
        score = rng.normal(size=200) + (1.0 if corr == "balanced" else 0.3) * y
        lines = ["sample,population,phenotype,score"] + [f"s{i}_{seed},{g},{v},{x}" for i, (g, v, x) in
                                                         enumerate(zip(groups, y, score))]
        (job / "predictions.csv").write_text("\n".join(lines) + "\n")
        w = float(np.mean([roc_auc_score(y[groups == g], score[groups == g]) for g in ("POP1", "POP2")]))
        within[corr, seed] = w
        (job / "analysis" / "audit.json").write_text(json.dumps({
            "correction": corr, "arch": "logistic", "auroc": {"overall": 0.9, "within_population": w},
            "accuracy": 0.8, "ancestry_auroc": 0.9, "oracle_auroc": None, "precision_at_k": None,
            "shortcut_index": 1.0}))
    rows = compare(tmp_path)
    bal = [r for r in rows if r["audit.correction"] == "balanced"]
    for r in bal:
        seed = int(r["data.split_seed"])
        assert r["within_vs_none"] == pytest.approx(within["balanced", seed] - within["none", seed], abs=1e-4)
        lo, hi = (float(x) for x in r["within_vs_none_ci95"].strip("[]").split(","))
        assert lo < r["within_vs_none"] < hi
    table = (tmp_path / "compare_over_seeds.csv").read_text().splitlines()
    assert len(table) == 3  # header, none, balanced
    import csv

    got = {r["audit.correction"]: r for r in csv.DictReader(open(tmp_path / "compare_over_seeds.csv"))}
    v = np.array([within["balanced", s] for s in (0, 1, 2)])
    assert float(got["balanced"]["auroc_within_population"]) == pytest.approx(v.mean(), abs=1e-4)
    half = t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
    assert float(got["balanced"]["auroc_within_population ±"]) == pytest.approx(half, abs=1e-4)
    assert got["balanced"]["seeds"] == "3"
    # the paired interval pooled over the three test sets: the mean difference, inside its interval
    diffs = [within["balanced", s] - within["none", s] for s in (0, 1, 2)]
    assert float(got["balanced"]["within_vs_none_pooled"]) == pytest.approx(np.mean(diffs), abs=1e-4)
    lo, hi = (float(x) for x in got["balanced"]["within_vs_none_pooled_ci95"].strip("[]").split(","))
    assert lo < np.mean(diffs) < hi and 0 < float(got["balanced"]["within_vs_none_pooled_p"]) <= 1

"""Analysis: the statistics on hand-made inputs, then a real run end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2king.analysis.connectivity import (apply_scheme, masses, match_temperature, p_values, permuted_lifts,
                                            row_entropy, softmax_king, top1_share)

ROOT = Path(__file__).resolve().parents[1]


def test_inversion_schemes_on_a_hand_made_matrix():
    w = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], dtype=torch.float64)
    s = torch.log(w)  # scores whose softmax is w
    assert torch.equal(apply_scheme(w, s, "none"), w)
    c = apply_scheme(w, s, "complement")
    # row 0: others 0.3, 0.2 -> 1 - a = 0.7, 0.8 -> renormalised 0.7/1.5, 0.8/1.5; self 0
    assert torch.allclose(c[0], torch.tensor([0.0, 0.7 / 1.5, 0.8 / 1.5], dtype=torch.float64))
    n = apply_scheme(w, s, "negate")
    # softmax(-log a) over others = (1/a) normalised: row 0 -> (1/0.3, 1/0.2) / sum
    assert torch.allclose(n[0, 1:], torch.tensor([1 / 0.3, 1 / 0.2], dtype=torch.float64) / (1 / 0.3 + 1 / 0.2))
    assert n[0, 0] == 0 and torch.allclose(n.sum(-1), torch.ones(3, dtype=torch.float64))


def test_uniform_attention_scores_chance_and_blocks_score_one():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    n = len(labels)
    uniform = torch.full((1, n, n), 1.0 / n)
    m = masses(uniform, labels, 3)
    assert np.allclose(m.shares()[0], m.chance())  # chance is the uniform share
    assert m.chance() == pytest.approx([2 / 8, 1 / 8, 3 / 8])
    block = (labels[:, None] == labels[None, :]).double()[None]
    mb = masses(block, labels, 3)
    assert np.allclose(mb.shares(), 1.0)
    assert mb.macro_lift()[0] == pytest.approx(np.mean([1 / (2 / 8), 1 / (1 / 8), 1 / (3 / 8)]))


def _score(a, labels, n_groups, perms=None):
    from seq2king.analysis.attention import Extracted
    from seq2king.analysis.side_by_side import score_matrices

    n = a.shape[-1]
    ex = Extracted([np.arange(n)], [a], [("none", 1, str(i)) for i in range(a.shape[0])])
    return score_matrices(ex, np.arange(n), np.asarray(labels), n_groups, perms)


def test_p_values_tiny_for_planted_structure_and_uniformish_under_shuffles():
    rng = np.random.default_rng(0)
    n, groups = 60, 3
    labels = np.repeat(np.arange(groups), n // groups)
    lab_t = torch.from_numpy(labels)
    planted = torch.from_numpy(rng.random((n, n))) + 2.0 * (lab_t[:, None] == lab_t[None, :])
    planted = (planted / planted.sum(-1, keepdim=True))[None]
    perms = np.stack([rng.permutation(n) for _ in range(500)])
    assert _score(planted, labels, groups, perms).p_macro[0] == pytest.approx(1 / 501)
    ps = []
    for k in range(40):  # no structure: attention unrelated to labels
        a = torch.from_numpy(rng.random((1, n, n)))
        a = a / a.sum(-1, keepdim=True)
        lab = rng.permutation(labels)
        perms = np.stack([rng.permutation(n) for _ in range(200)])
        ps.append(_score(a, lab, groups, perms).p_macro[0])
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65, ps
    assert (ps < 0.05).mean() < 0.2, ps


def test_identity_permutation_reproduces_the_observed_statistic_exactly():
    rng = np.random.default_rng(1)
    n, groups = 40, 4
    labels = rng.integers(0, groups, n)
    a = torch.from_numpy(rng.random((5, n, n)))
    a = a / a.sum(-1, keepdim=True)
    # the identity among other shuffles, in one chunk, through the permutation code path
    perms = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(30)])
    seqs = [(a, np.arange(n))]
    lifts = permuted_lifts(seqs, labels[perms], groups, n)
    obs = _score(a, labels, groups)
    assert np.array_equal(lifts[0], obs.lifts)
    assert np.array_equal(np.nanmean(lifts[0], -1), obs.macro_lift)


def test_exact_ties_count_on_a_tiny_case():
    """Two groups of 3 with attention uniform inside each group: the 72 of 720 orderings
    that keep the grouping (3! x 3! x 2 label swaps) tie with the observed lift."""
    import itertools

    labels = np.array([0, 0, 0, 1, 1, 1])
    block = torch.from_numpy((labels[:, None] == labels[None, :]).astype(float))
    block.fill_diagonal_(0)
    a = (block / block.sum(-1, keepdim=True))[None]
    every = np.array(list(itertools.permutations(range(6))))
    p_exact = _score(a, labels, 2, every).p_macro[0]
    assert p_exact == pytest.approx((1 + 72) / (1 + 720), abs=1e-12)
    rng = np.random.default_rng(0)
    p_mc = _score(a, labels, 2, np.stack([rng.permutation(6) for _ in range(2000)])).p_macro[0]
    assert abs(p_mc - 0.1) < 0.02  # float32 sums once dropped these ties: p = 0.0005
    # p_values itself: a value equal up to rounding is a tie
    assert p_values(np.array([1.0]), np.array([[1.0 - 1e-13], [0.5]]))[0] == pytest.approx(2 / 3)


def test_bootstrap_interval_covers_a_planted_difference():
    from seq2king.analysis.stats import mean_of, paired_bootstrap

    rng = np.random.default_rng(2)
    n = 400
    base = rng.random(n) < 0.6
    better = base | (rng.random(n) < 0.25)  # planted: about +0.1 on the same people
    true = better.mean() - base.mean()
    c = paired_bootstrap(mean_of(better), mean_of(base), n, "knn5_accuracy", n_boot=2000, seed=0)
    assert c.difference == pytest.approx(true)
    assert c.ci95[0] < true < c.ci95[1]
    assert c.ci95[0] > 0 and c.p_value < 0.01  # excludes 0
    same = rng.random(n) < 0.6
    other = rng.random(n) < 0.6  # no planted difference
    c0 = paired_bootstrap(mean_of(same), mean_of(other), n, "knn5_accuracy", n_boot=2000, seed=1)
    assert c0.ci95[0] < 0 < c0.ci95[1] or abs(c0.difference) > 0.05
    assert c0.p_value > 0.01 or c0.difference > 0.05


def test_bootstrap_of_intra_share_reproduces_the_observed_share():
    rng = np.random.default_rng(4)
    n = 30
    labels = rng.integers(0, 3, n)
    a = torch.from_numpy(rng.random((2, n, n)))
    a = a / a.sum(-1, keepdim=True)
    sc = _score(a, labels, 3)
    stat = sc.share_stat(1)
    assert stat(np.ones((1, n)))[0] == pytest.approx(sc.macro_share[1], rel=1e-12)
    w = np.zeros((1, n))
    w[0, :10] = 3  # weights are multiplicities: tripling everyone in a subset = that subset
    sub = _score(a[:, :, :], labels, 3)
    keep = np.zeros(n)
    keep[:10] = 1
    assert stat(w)[0] == pytest.approx(sub.share_stat(1)(keep[None])[0], rel=1e-12)


def test_bh_equals_scipy():
    from scipy.stats import false_discovery_control

    from seq2king.analysis.stats import bh

    p = np.random.default_rng(5).random((4, 6)) ** 3
    assert np.allclose(bh(p), false_discovery_control(p.ravel()).reshape(4, 6))
    p[0, 0] = np.nan
    adj = bh(p)
    assert np.isnan(adj[0, 0]) and np.allclose(adj.ravel()[1:], false_discovery_control(p.ravel()[1:]))


def test_knn_and_ari_match_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import cross_val_predict, LeaveOneOut

    from seq2king.analysis.stats import embedding_scores

    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 4)) + 1.5 * np.eye(3, 4)[y]
    scores, hits = embedding_scores(x, y)
    pred = cross_val_predict(KNeighborsClassifier(5), x, y, cv=LeaveOneOut())
    # ties between 5 neighbours' votes may break differently; nearly all agree
    assert abs(scores["knn5_accuracy"] - (pred == y).mean()) < 0.02
    assert scores["knn5_accuracy"] == pytest.approx(hits.mean())
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    km = KMeans(3, n_init=10, random_state=0).fit_predict(x)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(y, km))
    far, _ = embedding_scores(rng.normal(size=(120, 4)) + 6 * np.eye(3, 4)[y], y)
    assert far["knn5_accuracy"] == 1.0 and far["ari"] == 1.0


def test_genotype_pca_equals_scikit_learn_pca(tmp_path):
    from sklearn.decomposition import PCA

    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.pca import genotype_pca
    from conftest import FIXTURE

    src = BedSource(FIXTURE)
    g = src.read_all(king_only=True).astype(float)
    n = g.shape[0]
    fit, proj = np.arange(0, n, 2), np.arange(1, n, 2)
    res = genotype_pca(src, fit, proj, n_components=5, block_size=997, dtype=np.float64)
    # the same by hand: standardise with the fit people's frequencies, missing -> 0
    gf = np.where(g[fit] == -127, np.nan, g[fit])
    p = np.nanmean(gf, 0) / 2
    keep = (p > 0) & (p < 1)
    def std(x):
        x = np.where(x == -127, np.nan, x)[:, keep]
        z = (x - 2 * p[keep]) / np.sqrt(2 * p[keep] * (1 - p[keep]))
        return np.nan_to_num(z)
    pca = PCA(5, svd_solver="full").fit(std(g[fit]))
    ref = pca.transform(std(g[proj])) / np.sqrt(keep.sum())
    assert res.n_variants == keep.sum()
    for k in range(5):  # equal up to the sign of each axis
        sign = np.sign(ref[:, k] @ res.scores[:, k])
        assert np.allclose(res.scores[:, k], sign * ref[:, k], atol=1e-9)
    # the default float32 products give the same kernels to float32 precision
    from seq2king.genetics.pca import standardised_kernels

    k64 = standardised_kernels(src, fit, proj, 997, np.float64)
    k32 = standardised_kernels(src, fit, proj, 997)
    assert np.allclose(k32[0], k64[0], rtol=0, atol=1e-5 * np.abs(k64[0]).max())
    assert np.allclose(k32[1], k64[1], rtol=0, atol=1e-5 * np.abs(k64[0]).max())


def test_entropy_matched_temperature_and_top1():
    rng = np.random.default_rng(3)
    k = torch.from_numpy(rng.normal(size=(30, 30)))
    k = (k + k.T) / 2
    for target in (1.0, 2.5, 3.2):
        t = match_temperature([k], target)
        assert float(row_entropy(softmax_king(k, t))) == pytest.approx(target, abs=1e-6)
    labels = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([[0, .9, .1, 0], [.2, 0, .8, 0], [0, 0, 0, 1.], [0, 0, 1., 0]])
    assert top1_share(a, labels) == 0.75


# ----------------------------------------------------------------------------- on a real run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from test_train import make_cfg

    from seq2king.training import train

    tmp = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    import os

    os.environ["WANDB_MODE"] = "offline"
    train(make_cfg(tmp, cache, "trainer.max_epochs=3", "logger=default", "data.sequences_per_epoch=128"))
    return tmp


def analyze_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**__import__("os").environ, "WANDB_MODE": "offline"})


def test_analyze_writes_the_contract(trained_run):
    res = analyze_cli(f"run_dir={trained_run}", "analysis.permutations=200", "hydra.run.dir=" + str(trained_run / "h"))
    assert res.returncode == 0, res.stderr[-3000:]
    out = trained_run / "analysis"
    s = json.loads((out / "summary.json").read_text())
    assert s["split"] == "test" and s["n_individuals"] == 18
    assert sum(s["groups"].values()) == 18
    for key in ("layer", "head", "scheme", "intra_share", "lift", "p_value"):
        assert key in s["headline"]
    assert s["headline"]["chosen_on"] == "val"
    assert 0 < s["chance"] < 1
    assert {"untrained", "softmax_king"} <= set(s["baselines"])
    assert {"knn5_accuracy", "ari"} <= set(s["embedding"])
    rows = (out / "connectivity.csv").read_text().splitlines()
    assert rows[0] == "level,layer,head,scheme,group,intra_share,chance,lift,p_value,p_bh"
    assert all("" not in r.split(",")[-2:] for r in rows[1:])  # a p-value (and its BH) for every group and the mean
    # 2 layers x (2 heads + mean) x 3 schemes x (groups present + mean)
    n_groups = len([g for g, n in s["groups"].items() if n])
    assert len(rows) - 1 == 2 * 3 * 3 * (n_groups + 1)
    import csv as _csv

    from scipy.stats import false_discovery_control

    table = list(_csv.DictReader((out / "connectivity.csv").open()))
    p = np.array([float(r["p_value"]) for r in table])
    assert np.allclose([float(r["p_bh"]) for r in table], false_discovery_control(p), rtol=1e-5)
    # the peers: genotype PCA fitted on training people, paired comparisons, the methods table
    for peer in ("king_rows", "king_pca10", "genotype_pca10", "genotype_pca20"):
        assert 0 <= s["embedding_baselines"][peer]["knn5_accuracy"] <= 1
        c = s["comparisons"][peer]
        assert c["figure"] == "knn5_accuracy" and c["ci95"][0] <= c["difference"] <= c["ci95"][1]
    for base in ("untrained", "softmax_king"):
        c = s["comparisons"][base]
        assert c["figure"] == "intra_share" and 0 < c["p_value"] <= 1
        assert c["difference"] == pytest.approx(s["headline"]["intra_share"] - s["baselines"][base]["intra_share"])
    methods = {(r["method"], r["figure"]) for r in s["methods"]}
    assert {("model", "intra_share"), ("softmax_king", "intra_share"), ("genotype_pca20", "knn5_accuracy"),
            ("model", "knn5_accuracy")} <= methods
    assert list(s["levels"]) == ["superpopulation"] and s["levels"]["superpopulation"]["headline"] == s["headline"]
    assert s["extras"] == {"plots": "ok", "umap": "ok", "bertviz": "ok", "wandb": "ok"}
    for name in ("attention_heatmap.png", "connectivity_by_layer.png", "embeddings_pca.png", "embeddings_umap.png",
                 "embedding.html", "bertviz_head_view.html", "bertviz_model_view.html"):
        assert (out / name).stat().st_size > 1000, name
    assert "intra share" in res.stdout and "softmax-KING by" in res.stdout and "strongest embedding peer" in res.stdout
    # a parameter-free baseline for every input the model sees, each at the headline's entropy
    soft = ("softmax_king", "softmax_inputs", "softmax_pcs", "softmax_grm")
    assert set(soft) <= set(s["baselines"]) and "baselines_note" not in s
    for name in soft:
        b, c = s["baselines"][name], s["comparisons"][name]
        assert b["matched_entropy_nats"] == pytest.approx(s["baselines"]["softmax_king"]["matched_entropy_nats"])
        assert c["difference"] == pytest.approx(s["headline"]["intra_share"] - b["intra_share"])
    # the untrained twin is a first-class comparator: among the strongest candidates, and its embedding a peer
    assert s["strongest"]["attention"] == max(["untrained", *soft], key=lambda n: s["baselines"][n]["intra_share"])
    assert s["comparisons"]["untrained"]["figure"] == "intra_share"
    assert s["comparisons"]["untrained_embedding"]["figure"] == "knn5_accuracy"
    peers = set(s["embedding_baselines"])  # data.genotype_pcs is 32: PCA at 10, 20 and 32, raw and whitened
    assert {"inputs", *(f"genotype_pca{k}{w}" for k in (10, 20, 32) for w in ("", "_white"))} <= peers
    assert s["strongest"]["embedding"] == max(peers, key=lambda n: s["embedding_baselines"][n]["knn5_accuracy"])
    assert {name for name in peers} <= set(s["comparisons"])
    # logged to the training run's W&B run (same id, resumed)
    run_id = (trained_run / "wandb_id.txt").read_text().strip()
    assert list((out / "wandb").glob(f"offline-run-*-{run_id}"))


def test_inversion_sweep_keeps_each_setting(trained_run):
    res = analyze_cli("-m", f"run_dir={trained_run}", "analysis.inversion=none,negate", "analysis.permutations=50",
                      "analysis.umap=false",
                      "wandb=false", "hydra.sweep.dir=" + str(trained_run / "hs"))
    assert res.returncode == 0, res.stderr[-3000:]
    for inv in ("none", "negate"):
        s = json.loads((trained_run / f"analysis_{inv}" / "summary.json").read_text())
        assert s["headline"]["scheme"] == inv


def test_analysis_is_deterministic(trained_run, tmp_path):
    from seq2king.analysis.report import AnalysisSettings, analyze

    a = analyze(str(trained_run), settings=AnalysisSettings(permutations=100, seed=3, umap=False), wandb_log=False)
    b = analyze(str(trained_run), settings=AnalysisSettings(permutations=100, seed=3, umap=False), wandb_log=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_bertviz_renders_offline_in_headless_chromium(trained_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        import os

        if os.environ.get("SEQ2KING_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required here but not installed")
        pytest.skip("chromium not installed")
    from PIL import Image

    page = trained_run / "analysis" / "bertviz_head_view.html"
    if not page.exists():
        from seq2king.analysis.report import AnalysisSettings, analyze

        analyze(str(trained_run), settings=AnalysisSettings(permutations=50, umap=False), wandb_log=False)
    html = page.read_text()
    import re

    assert not re.search(r"""src=["']https?:""", html) and "cdnjs" not in html  # nothing fetched
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                    "--virtual-time-budget=5000", "--window-size=1000,800", f"--screenshot={shot}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    # something was drawn: many non-white pixels and real contrast
    assert (img < 200).mean() > 0.01 and img.std() > 10, ((img < 200).mean(), img.std())


def test_ids_are_escaped_in_bertviz_pages():
    from seq2king.analysis.bertviz_html import views

    evil = '</script><script>alert(1)</script> & "x"'
    pages = views([torch.rand(1, 1, 3, 3).softmax(-1)], [evil, "b (AFR)", "c"])
    for html in pages.values():
        assert "<script>alert(1)" not in html
        assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in html


def test_compare_over_a_sweep(trained_run, tmp_path):
    from seq2king.sweep_table import compare

    sweep = tmp_path / "sweep"
    for k in ("0", "1"):
        shutil.copytree(trained_run, sweep / k, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
        (sweep / k / ".hydra" / "overrides.yaml").write_text(f"- model.depth={k}\n")
    rows = compare(sweep)
    assert [r["model.depth"] for r in rows] == ["0", "1"]
    assert "intra_share" in rows[0] and "val/loss" in rows[0]
    assert "knn5_genotype_pca20" in rows[0] and "vs_softmax_king_ci95" in rows[0]
    assert "softmax_pcs" in rows[0] and "vs_strongest_ci95" in rows[0] and "strongest_baseline" in rows[0]
    md = (sweep / "compare.md").read_text().splitlines()
    assert md[0].startswith("| job | overrides | model.depth |") and len(md) == 4


def test_unlabelled_cohort_still_analyses(tmp_path):
    from test_train import make_cfg

    from seq2king.analysis.report import AnalysisSettings, analyze
    from seq2king.training import train

    king = ROOT / "tests" / "data" / "golden" / "king_fixture.king.bin"
    cfg = make_cfg(tmp_path / "run", tmp_path / "cache", "data=king", f"data.path={king}", "trainer.max_epochs=1",
                   "logger=csv", "model.panel_size=12", "data.max_len=16")
    train(cfg)
    s = analyze(str(tmp_path / "run"), settings=AnalysisSettings(permutations=10, umap=False), wandb_log=False)
    assert s["groups"] is None and "no labels" in s["connectivity"]
    assert sum(s["clusters"]["sizes"]) == s["n_individuals"]
    out = tmp_path / "run" / "analysis"
    clusters = (out / "clusters.tsv").read_text().splitlines()
    assert clusters[0] == "sample\tcluster" and len(clusters) == s["n_individuals"] + 1
    for name in ("attention_heatmap.png", "embeddings_pca.png", "bertviz_head_view.html", "bertviz_model_view.html"):
        assert (out / name).stat().st_size > 1000, name
    assert s["extras"] == {"plots": "ok", "bertviz": "ok"}


def test_softmax_baselines_by_hand(trained_run):
    """softmax_pcs and softmax_inputs recomputed from the datamodule's features: same entropy, same share."""
    from seq2king.analysis.connectivity import person_masses, row_entropy, softmax_king
    from seq2king.analysis.side_by_side import Context, similarities
    from seq2king.analysis.runs import load_run

    s = json.loads((trained_run / "analysis" / "summary.json").read_text())
    run = load_run(str(trained_run), None, "cpu")
    dm = run.datamodule
    people = np.sort(dm.splits["test"])
    ctx = Context(run.module.net, run.module.net, dm, people)
    lab = np.asarray(dm.cohort.levels["superpopulation"])
    groups = sorted(set(lab))
    y = np.array([groups.index(x) for x in lab[people]])
    a, b = dm.feature_blocks["pcs"]
    assert b - a == min(32, len(dm.splits["train"]) + len(dm.splits["panel"]) - 1)
    for name, cols in (("softmax_pcs", slice(a, b)), ("softmax_inputs", slice(None))):
        f = dm.features[torch.from_numpy(people)][:, cols].double()
        sim = -torch.cdist(f, f).square()
        base = s["baselines"][name]
        att = softmax_king(sim, base["temperature"])
        assert float(row_entropy(att)) == pytest.approx(base["matched_entropy_nats"], abs=1e-6)
        ours = similarities(ctx, name, [people])[0]
        assert torch.allclose(ours, sim, atol=1e-8 * float(sim.abs().max()))
        share = person_masses([(att[None], np.arange(len(people)))], y[None], len(groups), len(people))
        assert share.groups(y[None], len(groups)).macro_share()[0, 0] == pytest.approx(base["intra_share"], abs=1e-9)


def test_relationship_equals_numpy(tmp_path):
    """The analysed people's genomic relationship: standardised with the fit people's frequencies only."""
    from conftest import FIXTURE

    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.pca import relationship

    src = BedSource(FIXTURE)
    g = src.read_all(king_only=True).astype(float)
    n = g.shape[0]
    fit, rows = np.arange(0, n, 2), np.arange(1, n, 3)
    gf = np.where(g[fit] == -127, np.nan, g[fit])
    p = np.nanmean(gf, 0) / 2
    keep = (p > 0) & (p < 1)
    x = np.where(g[rows] == -127, np.nan, g[rows])[:, keep]
    z = np.nan_to_num((x - 2 * p[keep]) / np.sqrt(2 * p[keep] * (1 - p[keep])))
    ref = z @ z.T / keep.sum()
    got = relationship(src, fit, rows, block_size=997, dtype=np.float64)
    assert np.allclose(got, ref, atol=1e-10)
    # a person's relationship with themself is about 1 + F; across people it centres near 0
    assert abs(np.diag(got).mean() - 1) < 0.3


def test_king_matrix_alone_has_only_the_baselines_it_allows(tmp_path):
    """data=king with labels: no genotypes, so no softmax_pcs/softmax_grm and no genotype PCA, and it says so."""
    from test_train import make_cfg

    from seq2king.analysis.report import AnalysisSettings, analyze
    from seq2king.training import train

    king = ROOT / "tests" / "data" / "golden" / "king_fixture.king.bin"
    ids = [line.split("\t")[1] for line in (ROOT / "tests" / "data" / "golden" / "king_fixture.king.id")
           .read_text().splitlines()[1:]]
    labels = tmp_path / "labels.tsv"
    labels.write_text("sample\tsuperpopulation\n" + "".join(f"{i}\t{i.split('_')[0]}\n" for i in ids))
    cfg = make_cfg(tmp_path / "run", tmp_path / "cache", "data=king", f"data.path={king}", f"data.labels={labels}",
                   "trainer.max_epochs=1", "logger=csv", "model.panel_size=12", "data.max_len=16")
    train(cfg)
    s = analyze(str(tmp_path / "run"), settings=AnalysisSettings(permutations=10, bootstrap=20, umap=False), wandb_log=False)
    assert {"softmax_king", "softmax_inputs"} <= set(s["baselines"])
    assert not {"softmax_pcs", "softmax_grm"} & set(s["baselines"])
    assert "softmax_pcs, softmax_grm not computed" in s["baselines_note"] and "KING matrix alone" in s["baselines_note"]
    assert set(s["embedding_baselines"]) == {"untrained_embedding", "king_rows", "king_pca10", "inputs"}


def test_a_failing_extra_leaves_the_figures(trained_run, monkeypatch):
    from seq2king.analysis import writers
    from seq2king.analysis.report import AnalysisSettings, analyze

    def broken(*a, **k):
        raise RuntimeError("no display")

    monkeypatch.setattr(writers, "plots", broken)
    s = analyze(str(trained_run), settings=AnalysisSettings(permutations=20, bootstrap=50, umap=False), wandb_log=False)
    assert s["extras"]["plots"].startswith("failed: RuntimeError: no display") and s["extras"]["bertviz"] == "ok"
    saved = json.loads((trained_run / "analysis" / "summary.json").read_text())
    assert saved["headline"] == s["headline"] and saved["extras"] == s["extras"]
    assert (trained_run / "analysis" / "connectivity.csv").exists()


def test_a_changed_split_is_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("wandb", "analysis*"))
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "split_seed: 0" in cfg
    (run / ".hydra" / "config.yaml").write_text(cfg.replace("split_seed: 0", "split_seed: 1"))
    res = analyze_cli(f"run_dir={run}", "wandb=false", "analysis.umap=false", "hydra.run.dir=" + str(tmp_path / "h"))
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and str(run) in err[0] and "split" in err[0] and "changed since training" in err[0], err
    assert "Traceback" not in res.stderr
    assert not (run / "analysis").exists()


def test_label_levels_are_found_and_deduplicated(tmp_path):
    from seq2king.genetics.labels import read_label_levels

    ids = [f"s{i}" for i in range(8)]
    rows = ["Sample name\tSex\tPopulation code\tPopulation name\tSuperpopulation code\tnote"]
    pops = ["CHB", "CHB", "JPT", "JPT", "YRI", "YRI", "LWK", "LWK"]
    sup = {"CHB": "EAS", "JPT": "EAS", "YRI": "AFR", "LWK": "AFR"}
    for i, p in enumerate(pops):
        rows.append(f"s{i}\t{'MF'[i % 2]}\t{p}\t{p}-name\t{sup[p]}\tfree text {i}")
    path = tmp_path / "labels.tsv"
    path.write_text("\n".join(rows) + "\n")
    levels = read_label_levels(path, ids, column="superpopulation")
    # the configured level first; Population name groups exactly as Population code; note is ID-like
    assert list(levels) == ["superpopulation", "Sex", "population"]
    assert levels["population"] == pops and levels["superpopulation"][0] == "EAS"


def test_every_label_level_in_one_run(tmp_path):
    """Nine populations in five continents: both levels analysed, each with its own headline and peers."""
    from test_train import make_cfg

    from seq2king.analysis.headline import headline_line
    from seq2king.analysis.report import AnalysisSettings, analyze
    from seq2king.training import train

    cfg = make_cfg(tmp_path / "run", tmp_path / "cache", "data.simulation.model=FiveContinentsSubpopulations",
                   "data.simulation.samples=240", "trainer.max_epochs=2", "logger=csv")
    train(cfg)
    s = analyze(str(tmp_path / "run"), settings=AnalysisSettings(permutations=50, bootstrap=100, split="val", umap=False),
                wandb_log=False)
    assert list(s["levels"]) == ["superpopulation", "population"]
    pop, sup = s["levels"]["population"], s["levels"]["superpopulation"]
    assert set(sup["groups"]) == {"AFR", "EUR", "EAS", "SAS", "AMR"} and len(pop["groups"]) == 9
    assert sum(pop["groups"].values()) == sum(sup["groups"].values()) == s["n_individuals"]
    for block in (pop, sup):
        assert {"headline", "baselines", "embedding", "embedding_baselines", "comparisons"} <= set(block)
        assert "genotype_pca20" in block["comparisons"]
    assert {r["level"] for r in s["methods"]} == {"superpopulation", "population"}
    levels_in_csv = {line.split(",")[0] for line in (tmp_path / "run" / "analysis" / "connectivity.csv")
                     .read_text().splitlines()[1:]}
    assert levels_in_csv == {"superpopulation", "population"}
    assert (tmp_path / "run" / "analysis" / "connectivity_by_layer_population.png").exists()
    text = headline_line(s)
    assert "[superpopulation]" in text and "[population]" in text and "not selection-adjusted" in text
    assert "not selection-adjusted" in s["selection_note"]


def test_headline_near_ties_go_to_the_most_diffuse_matrix():
    from types import SimpleNamespace

    from seq2king.analysis.headline import choose_headline as _choose

    index = [("none", 4, "1"), ("none", 4, "2"), ("none", 4, "3"), ("negate", 4, "1")]
    entropy = np.array([3.0, 1.0, 4.0, 5.0])
    # 5.0 is within 0.5% of the best (5.02): a tie, broken by entropy; 4.0 is not
    sc = SimpleNamespace(macro_lift=np.array([5.0, 5.02, 4.0, 6.0]), index=index)
    assert _choose(sc, ("none",), entropy) == 0
    assert _choose(sc, ("none", "negate"), entropy) == 3  # only allowed schemes count
    sc = SimpleNamespace(macro_lift=np.array([4.5, 5.02, 4.0, 6.0]), index=index)
    assert _choose(sc, ("none",), entropy) == 1  # no tie: the highest lift
    assert _choose(sc, ("none",)) == 1


def test_the_analysis_package_does_not_import_the_audit():
    """Layers do not climb: no module under seq2king/analysis imports seq2king.audit (read from the source)."""
    import ast

    bad = []
    for path in sorted((ROOT / "seq2king" / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}: {n}" for n in names if n == "seq2king.audit" or n.startswith("seq2king.audit.")]
    assert not bad, bad


def test_group_style_groups_populations_under_their_superpopulation():
    """26 populations in 5 superpopulations: contiguous by superpopulation, one hue family each, 26 distinct
    colours; the parent level is found from the labels."""
    import colorsys

    from seq2king.analysis.writers import group_style
    from seq2king.analysis.report import parent_level
    from seq2king.genetics.simulate import POPULATIONS_26

    pops = [p for ps in POPULATIONS_26.values() for p in ps]
    sup_of = {p: c for c, ps in POPULATIONS_26.items() for p in ps}
    levels = {"population": sorted(pops) * 2, "superpopulation": [sup_of[p] for p in sorted(pops)] * 2,
              "sex": ["F", "M"] * 26}
    parent = parent_level(levels, "population")
    assert parent == sup_of and parent_level(levels, "superpopulation") is None
    groups = sorted(pops)  # alphabetical, as the analysis numbers them: ASW beside BEB
    order, colours = group_style(groups, parent)
    supers_in_order = [parent[groups[k]] for k in order]
    assert supers_in_order == sorted(supers_in_order)  # each superpopulation contiguous
    rgb = np.array([c[:3] for c in colours])
    dist = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1)) + np.eye(26)
    assert dist.min() > 0.02  # 26 distinguishable colours
    for sp in POPULATIONS_26:  # one hue family: the members' hues lie close together
        hues = [colorsys.rgb_to_hsv(*colours[k][:3])[0] for k in range(26) if parent[groups[k]] == sp]
        spread = max(hues) - min(hues)
        assert min(spread, 1 - spread) < 0.12 or sp == "EAS", (sp, hues)  # Greys: hue undefined
    order, colours = group_style([f"g{k}" for k in range(30)])
    assert len({c[:3] for c in colours}) == 30


def test_embedding_page_is_offline_and_escapes_ids(tmp_path):
    from seq2king.analysis.writers import embedding_html, group_style

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 5))
    y = np.repeat([0, 1, 2], 4)
    ids = [f"P{k}" for k in range(11)] + ["<script>alert('x')</script>"]
    labels = {"population": ["A&B"] * 12, "superpopulation": ["S"] * 12}
    groups = ["YRI", "CEU", "<b>X</b>"]
    parent = {"YRI": "AFR", "CEU": "EUR", "<b>X</b>": "EUR"}
    embedding_html(tmp_path / "e.html", emb, y, groups, ids, labels, group_style(groups, parent), parent)
    page = (tmp_path / "e.html").read_text()
    assert "<script>alert" not in page and "<b>X</b>" not in page
    assert "&lt;script&gt;alert" in page and "A&amp;B" in page
    import re

    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing loaded from outside: plotly.js is inlined
    assert "Plotly.newPlot" in page and len(page) > 1_000_000

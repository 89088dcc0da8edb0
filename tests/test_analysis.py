"""Analysis: the statistics on hand-made inputs, then a real run end to end."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2king.analysis.connectivity import (apply_scheme, masses, match_temperature, p_values,
                                            permutation_lifts, row_entropy, softmax_king, top1_share)

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


def test_p_values_tiny_for_planted_structure_and_uniformish_under_shuffles():
    rng = np.random.default_rng(0)
    n, groups = 60, 3
    labels = torch.from_numpy(np.repeat(np.arange(groups), n // groups))
    planted = torch.from_numpy(rng.random((n, n))) + 2.0 * (labels[:, None] == labels[None, :])
    planted = (planted / planted.sum(-1, keepdim=True))[None]
    obs = masses(planted, labels, groups).macro_lift()
    perm = permutation_lifts([(planted, torch.arange(n))], labels, groups, 500, seed=1)
    assert p_values(obs, perm)[0] == pytest.approx(1 / 501)
    ps = []
    for k in range(40):  # no structure: attention unrelated to labels
        a = torch.from_numpy(rng.random((1, n, n)))
        a = a / a.sum(-1, keepdim=True)
        lab = torch.from_numpy(rng.permutation(labels.numpy()))
        perm = permutation_lifts([(a, torch.arange(n))], lab, groups, 200, seed=k)
        ps.append(p_values(masses(a, lab, groups).macro_lift(), perm)[0])
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65, ps
    assert (ps < 0.05).mean() < 0.2, ps


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
    assert rows[0] == "layer,head,scheme,group,intra_share,chance,lift,p_value"
    assert all(r.split(",")[-1] != "" for r in rows[1:])  # a p-value for every group and the mean
    # 2 layers x (2 heads + mean) x 3 schemes x (4 groups + mean)
    assert len(rows) - 1 == 2 * 3 * 3 * 5
    for name in ("attention_heatmap.png", "connectivity_by_layer.png", "embeddings_pca.png",
                 "bertviz_head_view.html", "bertviz_model_view.html"):
        assert (out / name).stat().st_size > 1000, name
    assert "intra share" in res.stdout and "chance" in res.stdout
    # logged to the training run's W&B run (same id, resumed)
    run_id = (trained_run / "wandb_id.txt").read_text().strip()
    assert list((out / "wandb").glob(f"offline-run-*-{run_id}"))


def test_inversion_sweep_keeps_each_setting(trained_run):
    res = analyze_cli("-m", f"run_dir={trained_run}", "analysis.inversion=none,negate", "analysis.permutations=50",
                      "wandb=false", "hydra.sweep.dir=" + str(trained_run / "hs"))
    assert res.returncode == 0, res.stderr[-3000:]
    for inv in ("none", "negate"):
        s = json.loads((trained_run / f"analysis_{inv}" / "summary.json").read_text())
        assert s["headline"]["scheme"] == inv


def test_analysis_is_deterministic(trained_run, tmp_path):
    from seq2king.analysis.report import AnalysisSettings, analyze

    a = analyze(str(trained_run), settings=AnalysisSettings(permutations=100, seed=3), wandb_log=False)
    b = analyze(str(trained_run), settings=AnalysisSettings(permutations=100, seed=3), wandb_log=False)
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

        analyze(str(trained_run), settings=AnalysisSettings(permutations=50), wandb_log=False)
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
    from seq2king.analysis.cli import compare

    sweep = tmp_path / "sweep"
    for k in ("0", "1"):
        shutil.copytree(trained_run, sweep / k, ignore=shutil.ignore_patterns("wandb", "checkpoints"))
        (sweep / k / ".hydra" / "overrides.yaml").write_text(f"- model.depth={k}\n")
    rows = compare(sweep)
    assert [r["model.depth"] for r in rows] == ["0", "1"]
    assert "intra_share" in rows[0] and "val/loss" in rows[0]
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
    s = analyze(str(tmp_path / "run"), settings=AnalysisSettings(permutations=10), wandb_log=False)
    assert s["groups"] is None and "no labels" in s["connectivity"]
    assert sum(s["clusters"]["sizes"]) == s["n_individuals"]

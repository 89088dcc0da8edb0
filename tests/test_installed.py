"""An installed seq2king works without the checkout: a wheel, a fresh virtual environment outside the repo.

The wheel is built from this checkout and installed (``--no-deps``) into a new venv whose
only other packages are the project venv's (a ``.pth`` line: the heavy dependencies are
not downloaded again, and the checkout's own source is not on the path). From a folder
outside the repo it runs ``seq2king king`` (plink2's bytes), a two-step training and the
analysis through the library's own entry points with the configs shipped in the wheel,
and two audit jobs, one of which trains seq2king's ancestry model in-process.
"""

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import FIXTURE, GOLDEN

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, seq2king command)`` of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("installed")
    wheels = tmp / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)]
    if subprocess.run([*build, "--no-build-isolation"], capture_output=True).returncode != 0:
        subprocess.run(build, check=True, capture_output=True)  # this venv's setuptools is too old: PyPI's
    wheel = next(wheels.glob("seq2king-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    return python, venv / "bin" / "seq2king", tmp


def run_in(installed, *args, script=None, timeout=900):
    python, _, tmp = installed
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEQ2KING_CACHE")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    cmd = [str(python), "-c", textwrap.dedent(script)] if script else [*map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=timeout)


def test_the_package_comes_from_the_wheel_not_the_checkout(installed):
    res = run_in(installed, script="""
        import seq2king, seq2king.conf, importlib.resources as r
        print(seq2king.__file__)
        print(sorted(p.name for p in r.files("seq2king.conf").joinpath("experiment").iterdir()))
    """)
    assert res.returncode == 0, res.stderr[-3000:]
    where, configs = res.stdout.strip().splitlines()
    assert "site-packages" in where and str(ROOT) not in where, where
    assert "paper.yaml" in configs and "audit.yaml" in configs


def test_installed_king_is_plink2s_bytes(installed, tmp_path):
    _, seq2king, _ = installed
    res = run_in(installed, seq2king, "king", "--bfile", FIXTURE, "--out", tmp_path / "k")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "k.king.bin").read_bytes() == (GOLDEN / "king_fixture.king.bin").read_bytes()


def test_installed_training_analysis_and_audit(installed, tmp_path):
    """Library entry points only (no train.py, no conf/ folder): a two-step training and its analysis, then two
    audit jobs (no correction; seq2king's own, whose ancestry model is trained in this process)."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    res = run_in(installed, script=f"""
        import json
        from seq2king.commands import analyze_or_compare
        from seq2king.training import compose, train

        tiny = ["data.simulation.samples=120", "data.simulation.length=2000000", "data.simulation.seed=5",
                "model.panel_size=16", "data.min_len=4", "data.max_len=24", "data.batch_size=16",
                "model.d_model=32", "model.ffn_dim=64", "model.depth=2", "model.heads=2", "trainer.max_epochs=1",
                "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2", "logger=none",
                "++callbacks.rich_progress_bar=null", "paths.cache_dir={cache}"]
        m = train(compose("train", tiny, output_dir="{out}/run"))
        s = analyze_or_compare(compose("analyze", ["run_dir={out}/run", "analysis.permutations=20",
                                                   "analysis.bootstrap=20", "analysis.umap=false", "wandb=false"]))
        audit = ["experiment=audit", "data.scenario.samples=300", "data.scenario.loci=400",
                 "data.scenario.length=3000000", "data.scenario.causal=10", "trainer.max_epochs=3",
                 "audit.ig_steps=4", "audit.permutation_block=50", "logger=none",
                 "++callbacks.rich_progress_bar=null", "paths.cache_dir={cache}",
                 'data.ancestry_train=["model.panel_size=16","data.max_len=24","data.sequences_per_epoch=64",'
                 '"model.d_model=32","model.ffn_dim=64","model.depth=2","model.heads=2","trainer.max_epochs=1",'
                 '"++callbacks.rich_progress_bar=null"]']
        jobs = {{}}
        for correction in ("none", "seq2king"):
            run = "{out}/audit_" + correction
            jobs[correction] = train(compose("train", [*audit, "audit.correction=" + correction], output_dir=run))
            jobs[correction]["report"] = analyze_or_compare(compose("analyze", ["run_dir=" + run, "wandb=false"]))["auroc"]
        print(json.dumps({{"skill": m["test/skill"], "levels": list(s["levels"]), "audit": jobs}}))
    """)
    assert res.returncode == 0, res.stderr[-4000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["skill"] == got["skill"] and got["levels"] == ["superpopulation"]
    assert (out / "run" / "analysis" / "summary.json").exists() and (out / "run" / ".hydra" / "config.yaml").exists()
    for correction in ("none", "seq2king"):
        assert 0 <= got["audit"][correction]["test/auroc"] <= 1
        assert (out / f"audit_{correction}" / "analysis" / "audit.json").exists()
    runs = list((cache / "seq2king_runs").glob("*/checkpoints/last.ckpt"))
    assert len(runs) == 1  # the ancestry model, trained in-process from the wheel's configs, cached

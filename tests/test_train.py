"""Training: every config composes, each experiment runs, sweeps, resume, W&B, DDP.

In-process tests compose the real configs with Hydra's compose API and shrink
them; sweeps, optuna, submitit and DDP go through the real ``train.py`` CLI.
"""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from conftest import FIXTURE, read_wandb_records

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "seq2king" / "conf"

TINY = [
    "data.simulation.samples=120", "data.simulation.length=2000000", "data.simulation.seed=5",
    "model.panel_size=16", "data.min_len=4", "data.max_len=24", "data.sequences_per_epoch=96",
    "data.batch_size=16", "model.d_model=32", "model.ffn_dim=64", "model.depth=2", "model.heads=2",
    "model.scheduler.warmup_steps=5", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
    "++callbacks.rich_progress_bar=null",
]

# the audit task (experiment=audit): a tiny confounded scenario, 300 people, 400 loci, 10 causal SNPs
TINY_AUDIT = ["experiment=audit", "data.scenario.samples=300", "data.scenario.loci=400",
              "data.scenario.length=3000000", "data.scenario.causal=10", "data.batch_size=32",
              "trainer.max_epochs=30", "audit.top_k=20", "audit.permutation_block=20", "audit.ig_steps=8",
              "logger=none", "++callbacks.rich_progress_bar=null"]
AUDIT_ONLY = {"audit", "audit_null"}  # configs of the audit task: composed under experiment=audit
TWO_STEPS = ["trainer.max_epochs=1", "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=2",
             "++trainer.limit_test_batches=2"]


def audit_cfg(tmp_path, cache_dir, *overrides):
    """make_cfg for the audit task, shrunk (later overrides win)."""
    return make_cfg(tmp_path, cache_dir, *TINY_AUDIT, *overrides, tiny=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)


def make_cfg(tmp_path, cache_dir, *overrides, tiny=True):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[*(TINY if tiny else []), *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(cache_dir)
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger", "callbacks", "experiment",
                                   "debug", "hparams_search", "paths", "hydra"])
def test_every_config_composes(tmp_path, cache_dir, group):
    for opt in options(group):
        if opt in AUDIT_ONLY:
            cfg = audit_cfg(tmp_path, cache_dir, f"{group}={opt}")
            assert cfg.data._target_.endswith("AuditDataModule") and cfg.model._target_.endswith("AuditModule")
            continue
        extra = {"plink": [f"data.bfile={FIXTURE}"], "pgen": [f"data.pfile={FIXTURE}"],
                 "vcf": [f"data.vcf={FIXTURE}.vcf.gz"],
                 "king": [f"data.path={ROOT}/tests/data/golden/king_fixture.king.bin"]}.get(opt, [])
        cfg = make_cfg(tmp_path, cache_dir, f"{group}={opt}", *extra)
        assert cfg.data._target_ and cfg.model._target_ and cfg.trainer._target_


@pytest.mark.parametrize("data", ["simulated", "plink", "pgen", "vcf", "king"])
def test_every_data_source_instantiates(tmp_path, cache_dir, data):
    from seq2king.training import build

    extra = {"plink": [f"data.bfile={FIXTURE}"], "pgen": [f"data.pfile={FIXTURE}"],
             "vcf": [f"data.vcf={FIXTURE}.vcf.gz"],
             "king": [f"data.path={ROOT}/tests/data/golden/king_fixture.king.bin"]}.get(data, [])
    cfg = make_cfg(tmp_path, cache_dir, f"data={data}", *extra, "logger=csv")
    dm, model, trainer = build(cfg)
    b = next(iter(dm.train_dataloader()))
    # KING to the 16 panel people, plus the genomic relationship with them and 32 genotype PCs
    # when there are genotypes
    assert b["features"].shape[-1] == (16 if data == "king" else 16 + 16 + 32)
    assert b["target"].shape[1] == b["mask"].shape[1]
    # test people never appear in training sequences, the panel or the scaler's pairs
    test = set(dm.splits["test"].tolist())
    assert not test & set(dm.splits["train"].tolist()) and not test & set(dm.splits["panel"].tolist())
    for seq in dm.datasets["train"].plan:
        assert not test & set(seq.tolist())


@pytest.mark.parametrize("trainer", ["cpu", "ddp_sim"])
def test_cpu_trainers_instantiate(tmp_path, cache_dir, trainer):
    from seq2king.training import build

    cfg = make_cfg(tmp_path, cache_dir, f"trainer={trainer}", "logger=none")
    _, _, tr = build(cfg)
    assert tr.num_devices == (2 if trainer == "ddp_sim" else 1)


def test_gpu_presets_ask_for_bf16():
    import yaml

    for name in ("gpu", "ddp"):
        cfg = yaml.safe_load((CONF / "trainer" / f"{name}.yaml").read_text())
        assert cfg["accelerator"] == "gpu" and cfg["precision"] == "bf16-mixed"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_fast_dev_run_each_experiment(tmp_path, cache_dir, experiment):
    from seq2king.training import train

    if experiment in AUDIT_ONLY:
        cfg = audit_cfg(tmp_path, cache_dir, f"experiment={experiment}", "debug=fdr", "logger=csv")
    else:
        cfg = make_cfg(tmp_path, cache_dir, f"experiment={experiment}", "debug=fdr", *TINY[3:], "logger=csv")
    metrics = train(cfg)
    assert "train/loss" in metrics and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_learns_beyond_the_mean_on_unseen_people(tmp_path, cache_dir):
    """Val and test people are held out; the model must still beat predict-the-mean."""
    from seq2king.training import train

    cfg = make_cfg(tmp_path, cache_dir, "trainer.max_epochs=12", "data.sequences_per_epoch=192",
                   "model.dropout=0.0", "logger=csv", "model.optimizer.lr=0.002")
    m = train(cfg)
    assert m["val/loss"] < 0.5 * m["val/baseline_loss"], m
    assert m["test/loss"] < 0.75 * m["test/baseline_loss"], {k: v for k, v in m.items() if "/" in k}


def test_resume_continues_step_and_wandb_run(tmp_path, cache_dir):
    from seq2king.training import train

    first = tmp_path / "first"
    train(make_cfg(first, cache_dir, "trainer.max_epochs=1", "test=false"))
    last = first / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)  # plain data only: safe to load
    steps_per_epoch = ckpt["global_step"]
    assert steps_per_epoch == 96 // 16
    second = tmp_path / "second"
    train(make_cfg(second, cache_dir, "trainer.max_epochs=3", f"ckpt_path={last}", "test=false"))
    resumed = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 3 * steps_per_epoch
    assert resumed["epoch"] == 2
    assert (first / "wandb_id.txt").read_text() == (second / "wandb_id.txt").read_text() != ""


def test_wandb_offline_run_has_the_metrics(tmp_path, cache_dir):
    from seq2king.training import train

    metrics = train(make_cfg(tmp_path, cache_dir, "trainer.max_epochs=1"))
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    logged, config = {}, {}
    for rec in read_wandb_records(runs[0]):
        kind = rec.WhichOneof("record_type")
        items = rec.history.item if kind == "history" else rec.config.update if kind == "config" else []
        for it in items:
            (logged if kind == "history" else config)[it.key or "/".join(it.nested_key)] = json.loads(it.value_json)
    for key in ("train/loss", "val/loss", "val/baseline_loss", "test/loss"):
        assert isinstance(logged[key], float), key
    assert logged["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert config["d_model"] == 32 and config["model"]["depth"] == 2


def cli(tmp_path, cache_dir, *args, timeout=600):
    """Run train.py; flags (-m) go first, then the tiny settings, then the test's overrides."""
    env = {**os.environ, "WANDB_MODE": "offline", "SEQ2KING_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    flags = [a for a in args if a.startswith("-") and not a.startswith("--") or a == "--multirun"]
    rest = [a for a in args if a not in flags]
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), *flags, *TINY, *rest,
                          f"paths.cache_dir={cache_dir}", f"paths.log_dir={tmp_path}"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    return res


def test_multirun_sweep_2x2(tmp_path, cache_dir):
    res = cli(tmp_path, cache_dir, "-m", "model.depth=1,2", "model.heads=1,2", "trainer.max_epochs=1",
              "logger=csv", "test=false", f"hydra.sweep.dir={tmp_path}/sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("[0-9]*"))
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seen.add(overrides)
        assert "val/loss" in json.loads((job / "metrics.json").read_text())
        assert (job / "checkpoints" / "last.ckpt").exists()
    assert len(seen) == 4


def test_optuna_three_trials(tmp_path, cache_dir):
    res = cli(tmp_path, cache_dir, "hparams_search=optuna", "hydra.sweeper.n_trials=3",
              "hydra.sweeper.sampler.n_startup_trials=2", "trainer.max_epochs=1", "logger=csv",
              "test=false", f"hydra.sweep.dir={tmp_path}/optuna", "model.d_model=32")
    assert res.returncode == 0, res.stderr[-3000:]
    import yaml

    result = yaml.safe_load((tmp_path / "optuna" / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna" and result["best_value"] > 0
    assert len(list((tmp_path / "optuna").glob("[0-9]*"))) == 3


def test_submitit_local_launcher(tmp_path, cache_dir):
    res = cli(tmp_path, cache_dir, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
              "trainer.max_epochs=1", "logger=csv", "test=false", f"hydra.sweep.dir={tmp_path}/sub")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "val/loss" in json.loads((tmp_path / "sub" / "0" / "metrics.json").read_text())


@pytest.mark.parametrize("bucket", ["true", "false"])
def test_ddp_sim_two_processes(tmp_path, cache_dir, bucket):
    res = cli(tmp_path, cache_dir, "trainer=ddp_sim", "trainer.max_epochs=1", "logger=csv",
              f"data.bucket={bucket}", f"hydra.run.dir={tmp_path}/ddp")
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    # two processes split the 96 sequences: 48 each, batch 16 -> 3 steps
    assert ckpt["global_step"] == 3
    assert "test/loss" in json.loads((tmp_path / "ddp" / "metrics.json").read_text())


def test_failing_job_does_not_stop_the_sweep_but_fails_it_loudly(tmp_path, cache_dir):
    """A job that fails: the others finish, its traceback stays in its own log, the console gets one line per
    failed job at the end and the multirun exits 1; analyze.py compare lists it as failed."""
    res = cli(tmp_path, cache_dir, "-m", "model.heads=2,3", "trainer.max_epochs=1", "logger=csv",
              "test=false", f"hydra.sweep.dir={tmp_path}/sweep")
    assert res.returncode == 1, res.stderr[-3000:]
    assert (tmp_path / "sweep" / "0" / "metrics.json").exists()
    assert not (tmp_path / "sweep" / "1" / "metrics.json").exists()
    log = (tmp_path / "sweep" / "1" / "train.log").read_text()
    assert "Traceback" in log and "does not divide" in log
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    tail = [ln for ln in res.stderr.splitlines() if ln.startswith("seq2king: ")]
    assert tail[-2:] == [f"seq2king: job failed: {tmp_path}/sweep/1: model.heads=3 does not divide model.d_model=32",
                         "seq2king: 1 of 2 jobs failed (each traceback is in its directory's log)"], tail
    assert (tmp_path / "sweep" / "1" / "FAILED").read_text().strip() == "model.heads=3 does not divide model.d_model=32"
    res = subprocess.run([sys.executable, str(ROOT / "analyze.py"), f"compare={tmp_path}/sweep"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    with open(tmp_path / "sweep" / "compare.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok", "failed: model.heads=3 does not divide model.d_model=32"]
    assert float(rows[0]["val/lift"]) > 0 and rows[1]["val/lift"] == ""  # sortable by the structure figures


@pytest.mark.parametrize("override,needle", [
    ("model.heads=3", "model.heads=3 does not divide model.d_model=32"),
    ("data.split=[0.98,0.02,0.0]", "the test split of 120 people has 0"),
    ("data.max_len=500", "data.max_len=500 is longer than"),
    ("model.tokenizer=pixels", "model.tokenizer='pixels'"),
    ("matmul_precision=fast", "matmul_precision='fast': choose one of auto, highest, high, medium"),
])
def test_bad_config_fails_at_start_with_one_line(tmp_path, cache_dir, override, needle):
    res = cli(tmp_path, cache_dir, override, "logger=csv")
    assert res.returncode == 2, res.stderr[-2000:]
    # A split that needs the people counted comes after the cohort is made, whose progress bars
    # (only when the cache is cold) may precede it; nothing else may.
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]
    assert len(lines) == 1 and lines[0].startswith("seq2king: error: ") and needle in lines[0], lines
    assert "Traceback" not in res.stderr


def test_bad_model_config_fails_before_any_data_is_made(tmp_path):
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    res = cli(tmp_path, cache, "model.heads=3", "logger=csv")
    assert res.returncode == 2 and res.stderr.strip() == (
        "seq2king: error: model.heads=3 does not divide model.d_model=32"), res.stderr[-2000:]
    assert list(cache.iterdir()) == []  # no cohort simulated first


@pytest.mark.parametrize("overrides,needle", [
    (["data=plink", f"data.path={FIXTURE}"], f"data=plink takes data.bfile=..., not data.path; use data.bfile={FIXTURE}"),
    (["data=pgen"], "data=pgen needs data.pfile=PREFIX"),
    ([f"data.bfile={FIXTURE}"], "data.bfile is set but the data source is simulated; add data=plink"),
    (["data=plink", f"data.bfiel={FIXTURE}"], "no data key 'bfiel'; did you mean data.bfile?"),
])
def test_data_keys_follow_plink2_flags(tmp_path, cache_dir, overrides, needle):
    res = cli(tmp_path, cache_dir, *overrides, "logger=csv")
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("seq2king: error: ") and needle in lines[0], lines


def test_plink2_style_keys_train(tmp_path, cache_dir):
    from seq2king.training import build

    dm, _, _ = build(make_cfg(tmp_path, cache_dir, "data=plink", f"data.bfile={FIXTURE}", "logger=csv"))
    # 64 in the fixture, less the one with no heterozygous calls (KING -inf)
    assert dm.cohort.genotypes == {"kind": "plink", "path": str(FIXTURE)} and len(dm.cohort.ids) == 63


@pytest.mark.parametrize("logger", options("logger"))
@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_every_logger_and_callbacks_option_starts(tmp_path, cache_dir, logger, callbacks):
    from seq2king.training import train

    # two steps with limit_*_batches, not fast_dev_run: Lightning swaps every logger for a dummy there
    if callbacks in AUDIT_ONLY:
        cfg = audit_cfg(tmp_path, cache_dir, f"logger={logger}", *TWO_STEPS)
    else:
        cfg = make_cfg(tmp_path, cache_dir, f"logger={logger}", f"callbacks={callbacks}", *TWO_STEPS,
                       "++callbacks.rich_progress_bar=null")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


@pytest.mark.parametrize("logger", options("logger"))
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_runs_two_steps_under_every_logger(tmp_path, cache_dir, experiment, logger):
    """Each shipped experiment, two real steps under each logger (W&B offline): the audit_null tag crash
    (a YAML null tag) hid behind fast_dev_run, which replaces every logger."""
    from seq2king.training import train

    if experiment in AUDIT_ONLY:
        cfg = audit_cfg(tmp_path, cache_dir, f"experiment={experiment}", f"logger={logger}", *TWO_STEPS)
    else:
        cfg = make_cfg(tmp_path, cache_dir, f"experiment={experiment}", f"logger={logger}", *TWO_STEPS)
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    runs = list((tmp_path / "wandb").glob("offline-run-*")) if (tmp_path / "wandb").exists() else []
    assert (len(runs) == 1) == (logger in ("wandb", "default")), runs
    assert (tmp_path / "csv").exists() == (logger in ("csv", "default"))


# the shipped data presets, shrunk: few people, a short contig, few loci and markers
PRESET_TINY = {
    "plink": [f"data.bfile={FIXTURE}"], "pgen": [f"data.pfile={FIXTURE}"], "vcf": [f"data.vcf={FIXTURE}.vcf.gz"],
    "king": [f"data.path={ROOT}/tests/data/golden/king_fixture.king.bin"],
    "ancestry_panel": ["data.simulation.loci=300", "data.simulation.aims=40"],
    "within_continent": ["data.simulation.loci=300"],
    "ancestry_panel_26": ["data.simulation.loci=300", "data.simulation.aims=40"],
}


@pytest.mark.parametrize("logger", options("logger"))
@pytest.mark.parametrize("preset", [("data", d) for d in options("data")]
                         + [("hparams_search", h) for h in options("hparams_search")])
def test_every_data_preset_and_search_runs_two_steps_under_every_logger(tmp_path, cache_dir, preset, logger):
    """Each shipped data= preset (shrunk) and hparams_search= preset, two real steps under each logger."""
    from seq2king.training import train

    group, opt = preset
    if opt in AUDIT_ONLY:
        cfg = audit_cfg(tmp_path, cache_dir, f"logger={logger}", *TWO_STEPS)
    else:
        extra = PRESET_TINY.get(opt, []) + (["model.panel_size=12", "data.max_len=16"] if opt in ("plink", "pgen", "vcf", "king") else [])
        cfg = make_cfg(tmp_path, cache_dir, f"{group}={opt}", f"logger={logger}", *extra, *TWO_STEPS)
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    runs = list((tmp_path / "wandb").glob("offline-run-*")) if (tmp_path / "wandb").exists() else []
    assert (len(runs) == 1) == (logger in ("wandb", "default")), runs


def test_compiled_checkpoint_stores_one_copy_and_loads_uncompiled(tmp_path):
    from seq2king.model.module import Seq2KingModule

    kw = dict(tokenizer="kinship", panel_size=8, d_model=16, depth=1, heads=2, ffn_dim=16, max_len=8)
    compiled = Seq2KingModule(compile=True, **kw)
    keys = list(compiled.state_dict())
    assert keys and not any("_compiled" in k or "_orig_mod" in k for k in keys)
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": compiled.state_dict(), "hyper_parameters": dict(compiled.hparams)}, path)
    ckpt = torch.load(path, weights_only=True)
    plain = Seq2KingModule(**{**ckpt["hyper_parameters"], "compile": False})
    plain.load_state_dict(ckpt["state_dict"])  # strict: every key matches
    for (k, a), (_, b) in zip(compiled.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), k


def test_input_errors_are_value_errors(tmp_path):
    from seq2king.errors import FileFormatError, InputError
    from seq2king.genetics.kingio import read_king

    assert issubclass(InputError, ValueError) and issubclass(FileFormatError, InputError)
    with pytest.raises(ValueError) as missing:
        read_king(tmp_path / "no_such.king.bin")
    assert not isinstance(missing.value, FileFormatError)  # a bad value (path), not a bad file
    bad = tmp_path / "m.csv"
    bad.write_text("a,b\n0.5,0.1\n")  # two IDs, one row: not square
    with pytest.raises(FileFormatError, match="not square|must be square"):
        read_king(bad)


def test_slurm_launcher_config_composes(tmp_path, cache_dir):
    cfg = make_cfg(tmp_path, cache_dir, "hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=3")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices == 4
    assert cfg.hydra.launcher.nodes == cfg.trainer.num_nodes == 3  # DDP across nodes: SLURM starts 3 x 4 tasks


def test_length_buckets_keep_the_epochs_sequences_and_pad_little():
    import numpy as np

    from seq2king.data.datamodule import LengthBuckets, SequenceSet

    data = SequenceSet(np.arange(500), 1000, 2, 100, seed=0, random=True)
    sampler = LengthBuckets(data, batch_size=30, pool=8, seed=0)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 34  # 4 windows of 240 sequences -> 8 batches, then 40 -> 2
        assert sorted(i for b in batches for i in b) == list(range(1000))  # every sequence once
        lengths = [[len(data[i]) for i in b] for b in batches]
        padded = sum(len(ls) * max(ls) for ls in lengths) / sum(map(sum, lengths))
        assert padded < 1.15  # plain batches of random lengths 2..100: about 1.9
        if epoch == 0:
            first = batches
    assert first != batches  # each epoch its own plan and order


def test_length_buckets_give_every_process_as_many_batches(monkeypatch):
    """An odd number of batches over 2 processes: both take the same number of steps (else DDP's all-reduce
    waits for ever), the extra one a repeat of the epoch's first, as DistributedSampler pads."""
    import numpy as np

    from seq2king.data.datamodule import LengthBuckets, SequenceSet

    data = SequenceSet(np.arange(300), 200, 8, 64, seed=0, random=True)
    sampler = LengthBuckets(data, batch_size=32, seed=0)
    sampler.set_epoch(0)
    alone = list(sampler)
    assert len(alone) == 7
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler) == 4
    assert sorted(map(tuple, per_rank[0] + per_rank[1])) == sorted(map(tuple, alone + alone[:1]))


def test_every_experiment_tags_are_strings(tmp_path, cache_dir):
    """W&B takes tags as strings: a bare YAML ``null`` in a list crashed every audit_null job at wandb.init."""
    for opt in options("experiment"):
        cfg = (audit_cfg(tmp_path, cache_dir, f"experiment={opt}") if opt in AUDIT_ONLY
               else make_cfg(tmp_path, cache_dir, f"experiment={opt}"))
        tags = list(cfg.get("tags") or [])
        assert tags and all(isinstance(t, str) for t in tags), (opt, tags)


def test_structure_metrics_equal_the_analysis_on_validation_people(tmp_path, cache_dir):
    """val/intra_share, val/lift, val/top1, val/knn5 are what analyze.py split=val reports for the final
    model (no inversion), logged to the CSV; optuna_structure maximises val/lift."""
    res = cli(tmp_path, cache_dir, "logger=csv", "trainer.max_epochs=1", "test=false",
              f"hydra.run.dir={tmp_path}/run")
    assert res.returncode == 0, res.stderr[-3000:]
    import pandas as pd

    logged = pd.read_csv(next((tmp_path / "run" / "csv").rglob("metrics.csv")))
    last = logged.dropna(subset=["val/lift"]).iloc[-1]
    res = subprocess.run([sys.executable, str(ROOT / "analyze.py"), f"run_dir={tmp_path}/run", "split=val",
                          "analysis.inversion=none", "analysis.permutations=20", "analysis.bootstrap=20", "analysis.umap=false",
                          f"hydra.run.dir={tmp_path}/alog"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((tmp_path / "run" / "analysis_none" / "summary.json").read_text())
    h = s["headline"]
    assert last["val/intra_share"] == pytest.approx(h["intra_share"], abs=1e-6)
    assert last["val/lift"] == pytest.approx(h["lift"], abs=1e-6)
    assert last["val/top1"] == pytest.approx(h["top1_share"], abs=1e-6)
    assert last["val/knn5"] == pytest.approx(s["embedding"]["knn5_accuracy"], abs=1e-6)
    assert h["lift"] > 1.0
    cfg = make_cfg(tmp_path, cache_dir, "hparams_search=optuna_structure")
    assert cfg.optimized_metric == "val/lift" and cfg.hydra.sweeper.direction == "maximize"
    assert cfg.callbacks.model_checkpoint.monitor == "val/lift" and cfg.callbacks.model_checkpoint.mode == "max"
    params = cfg.hydra.sweeper.params  # the objectives beside the network's shape
    assert params["data.target"] == "choice(king, grm)" and "model.reconstruction" in params
    assert params["model.depth"] == "choice(2, 4, 6)"


def test_analyze_true_leaves_the_analysis_in_each_job(tmp_path, cache_dir):
    """analyze=true: each job of a sweep ends with analyze.py's default analysis in its own directory."""
    res = cli(tmp_path, cache_dir, "-m", "model.depth=1,2", "trainer.max_epochs=1", "logger=csv", "test=false",
              "analyze=true", f"hydra.sweep.dir={tmp_path}/sweep")
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("0", "1"):
        s = json.loads((tmp_path / "sweep" / job / "analysis" / "summary.json").read_text())
        assert s["headline"]["lift"] > 0 and s["split"] == "test"
    assert res.stdout.count("analysis in ") == 2

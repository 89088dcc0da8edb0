"""Compose and run one training job from a Hydra config (library side of train.py).

Following ashleve/lightning-hydra-template: seed, instantiate the datamodule,
model, callbacks, loggers and trainer, fit, test, and return the metric the
sweeper optimises. A failing job in a multirun reports NaN so the sweep goes on:
its traceback goes to its own log, its directory gets a ``FAILED`` file with the
error's last line, the console one line; when the multirun ends,
:class:`FailedJobs` (a Hydra callback) prints one line per failed job and exits 1.
The W&B run is always finished.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import hydra
import pytorch_lightning as pl
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, OmegaConf, open_dict

from seq2king import runtime
from seq2king.checkpoints import check_fits, read_checkpoint
from seq2king.errors import error_line
from seq2king.fileio import ensure_folder, write_json, write_text

log = logging.getLogger(__name__)


def _run_dir_of_ckpt(ckpt_path: str) -> Path:
    return Path(ckpt_path).resolve().parent.parent


def instantiate_loggers(cfg: DictConfig, output_dir: Path) -> list:
    loggers = []
    for name, lg in (cfg.get("logger") or {}).items():
        if not isinstance(lg, DictConfig) or "_target_" not in lg:
            continue
        if lg._target_.endswith("WandbLogger"):
            with open_dict(lg):
                if lg.get("offline") is None:
                    lg.offline = runtime.wandb_mode() != "online"
                if lg.get("id") is None and cfg.get("ckpt_path"):
                    # Resuming: continue the same W&B run as the checkpoint's job.
                    id_file = _run_dir_of_ckpt(cfg.ckpt_path) / "wandb_id.txt"
                    if id_file.exists():
                        lg.id = id_file.read_text().strip()
                        lg.resume = "allow"
                if lg.get("group") is None:
                    lg.group = _multirun_group()
            os.environ["WANDB_DIR"] = str(output_dir)
            os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(hydra.utils.instantiate(lg))
    return loggers


def _multirun_group() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir).name
    except Exception:
        pass
    return None


def _is_multirun() -> bool:
    return _multirun_group() is not None


def build(cfg: DictConfig):
    """Instantiate datamodule, model, callbacks, loggers and trainer (no fitting)."""
    output_dir = Path(cfg.paths.output_dir)
    target = cfg.model.get("_target_")
    check = getattr(hydra.utils.get_class(target), "check_config", None) if target else None
    if check is not None:  # the model's own checks first: making the data can take minutes
        check(**OmegaConf.to_container(cfg.model, resolve=True))
    ckpt = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None  # a bad file stops before the data
    datamodule = hydra.utils.instantiate(cfg.data)
    t0 = time.perf_counter()
    datamodule.setup()
    log.info("data set-up took %.1f s", time.perf_counter() - t0)
    model = hydra.utils.instantiate(cfg.model, **datamodule.model_kwargs())  # what the data tells the model
    if ckpt is not None:  # resuming: the same model, and the same data (split and every byte), or one line
        check_fits(ckpt, model, cfg.ckpt_path)
        datamodule.load_state_dict(ckpt.get(type(datamodule).__qualname__) or {})
    loggers = instantiate_loggers(cfg, output_dir)
    callbacks = []
    for c in (cfg.get("callbacks") or {}).values():
        if not isinstance(c, DictConfig) or "_target_" not in c:
            continue
        if c._target_.endswith("LearningRateMonitor") and not loggers:
            log.info("logger=none: the learning-rate monitor has nothing to log to and is left out")
            continue
        callbacks.append(hydra.utils.instantiate(c))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict:
    """Fit (and test) one job; returns the metrics dict."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    runtime.configure(cfg.get("matmul_precision", "auto"), runtime.trainer_device(cfg.trainer.get("accelerator")))
    output_dir = ensure_folder(cfg.paths.output_dir)
    try:
        return _fit_and_test(cfg, output_dir)
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    """Always close the W&B run, so the next job (or a failed one) starts clean."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception:  # never mask the job's own error
        log.exception("could not finish the W&B run")


def _fit_and_test(cfg: DictConfig, output_dir: Path) -> dict:
    datamodule, model, trainer = build(cfg)
    datamodule.write_split(output_dir / "split.json")
    saved = output_dir / ".hydra" / "config.yaml"
    if not saved.exists():  # called as a library, not through train.py: keep what analyze needs
        plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        saved.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(plain, saved)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if type(lg).__name__ == "WandbLogger":
            write_text(output_dir / "wandb_id.txt", lg.version or "")
    if cfg.get("train", True):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test", True):
        cb = trainer.checkpoint_callback
        ckpt = getattr(cb, "best_model_path", "") or None
        tester = trainer
        if trainer.world_size > 1 or "spawn" in type(trainer.strategy).__name__.lower():
            # Test on one device: a distributed sampler pads and splits the test
            # people, and spawned workers do not share the loggers' state.
            tester = pl.Trainer(accelerator=trainer.accelerator, devices=1, logger=False,
                                enable_progress_bar=False, precision=cfg.trainer.get("precision", "32-true"),
                                callbacks=[c for c in trainer.callbacks if getattr(c, "after_test", False)])
        tester.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        test_metrics = {k: float(v) for k, v in tester.callback_metrics.items() if k.startswith("test/")}
        if tester is not trainer:
            for lg in trainer.loggers:
                lg.log_metrics(test_metrics, step=trainer.global_step)
        metrics.update(test_metrics)
    write_json(output_dir / "metrics.json", dict(sorted(metrics.items())))
    if "test/auroc" in metrics:
        print(f"test: AUROC {metrics['test/auroc']:.3f} on {len(datamodule.splits['test'])} people never seen in "
              f"training; the audit report: python analyze.py run_dir={output_dir}", flush=True)
    elif "test/skill" in metrics:
        print(f"test: MSE {metrics['test/loss']:.4f} vs predict-the-mean {metrics['test/baseline_loss']:.4f} "
              f"(skill {metrics['test/skill']:.3f}) on {len(datamodule.splits['test'])} people never seen in "
              "training", flush=True)
    print(f"run directory: {output_dir}", flush=True)
    return metrics


CONFIG_MODULE = "seq2king.conf"
CONFIG_DIR = Path(__file__).resolve().parent / "conf"  # the same configs, as files (train.py's config_path)


def compose(config_name: str = "train", overrides: list[str] | tuple = (), output_dir=None) -> DictConfig:
    """A config composed from the configs shipped in the package, with ``overrides`` as on the command line,
    for library callers (``train(compose(overrides=[...], output_dir=DIR))``); inside a running Hydra app too
    (its state is put back). ``output_dir``: where the run writes (``paths.output_dir``)."""
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = hydra.compose(config_name=config_name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(backup)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def check_data_keys(argv: list[str], conf_dir: Path = CONFIG_DIR) -> None:
    """One clear line for a ``data.KEY=`` override that no data config has.

    Hydra would stop with "Key 'KEY' is not in struct"; this names the key to use.
    """
    known = set()
    for f in sorted((conf_dir / "data").glob("*.yaml")):  # the audit's data config has keys of its own
        known |= {k for k in OmegaConf.load(f) if k != "defaults"}
    for arg in argv:
        key, eq, _ = arg.partition("=")
        if not eq or not key.startswith("data.") or key.startswith(("+", "~")):
            continue
        top = key.split(".")[1]
        if top not in known:
            near = difflib.get_close_matches(top, sorted(known), n=1)
            hint = (f"did you mean data.{near[0]}?" if near else
                    "the data keys are " + ", ".join(sorted(k for k in known if not k.startswith("_"))))
            print(f"seq2king: error: {arg}: no data key {top!r}; {hint} "
                  "(data=plink data.bfile=PREFIX, data=pgen data.pfile=PREFIX, data=vcf data.vcf=FILE, "
                  "data=king data.path=FILE)", file=sys.stderr, flush=True)
            raise SystemExit(2)


FAILED_FILE = "FAILED"


def _last_line(e: BaseException) -> str:
    """A bad input's (or file-system fault's) own line, else the exception's type and last line."""
    line = error_line(e)
    if line is not None:
        return line
    last = (str(e).strip().splitlines() or [""])[-1]
    return f"{type(e).__name__}: {last}" if last else type(e).__name__


def _record_failure(cfg: DictConfig, e: BaseException) -> None:
    """The traceback to the job's log file only, ``FAILED`` (the last line) in its directory, one console line."""
    line = _last_line(e)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "job failed; the sweep goes on\n%s",
                            ("".join(traceback.format_exception(e)),), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    out = Path(cfg.paths.output_dir)
    try:
        write_text(out / FAILED_FILE, line + "\n")
    except OSError:
        pass
    print(f"seq2king: job failed ({out}): {line}; the sweep goes on", file=sys.stderr, flush=True)


class EpochTimer(pl.Callback):
    """Says how long each epoch's training batches took (built and stepped; the validation run inside the epoch
    is not counted), and under DDP each process's own peak memory: the lines benchmarks/scale.py reads."""

    def __init__(self):
        self._started = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def _done(self, trainer) -> None:
        if self._started is not None:
            log.info("epoch %d: training took %.2f s", trainer.current_epoch, time.perf_counter() - self._started)
            self._started = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._done(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._done(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            print(f"seq2king: process {trainer.global_rank} of {trainer.world_size}: peak memory "
                  f"{_own_peak_gb():.2f} GB", flush=True)


def _own_peak_gb() -> float:
    """This process's peak resident memory: VmHWM (getrusage's maxrss would carry a spawning parent's
    peak through fork and exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1048576
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576


class OutputFolder(Callback):
    """Hydra callback: the run (or sweep) folder made before Hydra makes it, so a folder that cannot be made
    (read-only, a file in its place) is one line and exit 2, not Hydra's traceback."""

    @staticmethod
    def _make(folder) -> None:
        try:
            ensure_folder(folder)
        except OSError as e:
            print(f"seq2king: error: {error_line(e)} (the run folder: hydra.run.dir / hydra.sweep.dir)",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._make(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._make(config.hydra.sweep.dir)


class FailedJobs(Callback):
    """Hydra callback: at the end of a multirun, one line per job with a ``FAILED`` file, then exit 1.

    It reads the sweep directory, so it sees jobs run by any launcher that writes there (basic,
    joblib, submitit on a shared file system).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        failed = sorted(sweep.rglob(FAILED_FILE), key=lambda p: (len(str(p)), str(p))) if sweep.is_dir() else []
        if not failed:
            return
        jobs = sum(1 for _ in sweep.rglob("overrides.yaml"))
        for f in failed:
            print(f"seq2king: job failed: {f.parent}: {f.read_text().strip()}", file=sys.stderr, flush=True)
        print(f"seq2king: {len(failed)} of {jobs} jobs failed (each traceback is in its directory's log)",
              file=sys.stderr, flush=True)
        raise SystemExit(1)


def run(cfg: DictConfig, after: Callable[[DictConfig], object] | None = None) -> float:
    """train() with the template's safety net; returns ``cfg.optimized_metric``. ``after(cfg)`` runs once
    training succeeded, inside the same net (train.py's ``analyze=true`` passes the analysis: training itself
    never imports it)."""
    metric_name = cfg.get("optimized_metric")
    try:
        metrics = train(cfg)
        if after is not None:
            after(cfg)
    except Exception as e:
        line = error_line(e)
        if line is not None and not _is_multirun():
            print(f"seq2king: error: {line}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        if _is_multirun():
            _record_failure(cfg, e)
            return float("nan")
        raise
    value = metrics.get(metric_name, float("nan")) if metric_name else float("nan")
    if metric_name and math.isnan(value):
        log.warning("optimized metric %s not found in %s", metric_name, sorted(metrics))
    return value

"""Loading a train run for analysis: config, datamodule, checkpoint, and a check that the split is the run's."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from seq2king.checkpoints import check_fits, read_checkpoint
from seq2king.data.cohort import check_digests
from seq2king.errors import InputError
from seq2king.model.module import Seq2KingModule

log = logging.getLogger(__name__)


@dataclass
class Run:
    cfg: object  # the run's composed config (OmegaConf)
    datamodule: object  # Seq2KingDataModule, set up
    module: object  # Seq2KingModule, eval mode
    run_dir: Path
    checkpoint: Path


def find_checkpoint(run_dir: Path) -> Path:
    ckpts = run_dir / "checkpoints"
    best = sorted(p for p in ckpts.glob("epoch_*.ckpt"))
    if best:
        return best[-1]
    if (ckpts / "last.ckpt").exists():
        return ckpts / "last.ckpt"
    raise InputError(f"{run_dir}: no checkpoints/epoch_*.ckpt or checkpoints/last.ckpt; is it a train run?")


def load_run(run_dir: str | None = None, ckpt_path: str | None = None, device: str = "cpu") -> Run:
    """The train run in ``run_dir`` (or the run a checkpoint lies in), model in eval mode.

    The split is rebuilt from the run's saved config and checked against the one the
    checkpoint was trained on (:func:`verify_split`).
    """
    import hydra
    from omegaconf import OmegaConf

    if not run_dir and not ckpt_path:
        raise InputError("give run_dir=DIR (a train run) or ckpt_path=FILE")
    if ckpt_path:
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.exists():
            raise InputError(f"ckpt_path={ckpt_path}: file not found")
        run_dir = Path(run_dir) if run_dir else ckpt_path.resolve().parent.parent
    else:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(f"run_dir={run_dir}: not a directory")
        ckpt_path = find_checkpoint(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.exists():
        raise InputError(f"{run_dir}: no .hydra/config.yaml; analyze needs the train run's directory")
    cfg = OmegaConf.load(cfg_path)
    ckpt = read_checkpoint(ckpt_path, map_location=device)  # before the data: a bad file stops at once
    try:
        module = Seq2KingModule(**ckpt["hyper_parameters"])
    except (TypeError, ValueError) as e:
        raise InputError(f"{ckpt_path}: not a checkpoint of a seq2king model ({str(e).splitlines()[0]})") from None
    check_fits(ckpt, module, ckpt_path)
    module.load_state_dict(ckpt["state_dict"])
    module.eval().to(device)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    verify_split(run_dir, datamodule, ckpt.get(type(datamodule).__qualname__))
    log.info("loaded %s", ckpt_path)
    return Run(cfg, datamodule, module, run_dir, Path(ckpt_path))


def verify_split(run_dir: Path, datamodule, ckpt_state: dict | None) -> None:
    """Stop when the rebuilt split is not the one the model was trained on.

    Compares with the datamodule state stored in the checkpoint (cohort positions)
    and with ``split.json`` (IDs), whichever the run has. Changed data, labels, cache or
    ``data.split_seed`` all show up here; so do genotypes (or a KING file) whose bytes
    changed with the same people, through the content digests both record.
    """
    ids = datamodule.cohort.ids
    now = {k: [ids[i] for i in v] for k, v in datamodule.splits.items()}
    advice = "analyse it with the data it was trained on, or train again"
    if ckpt_state:
        check_digests(ckpt_state.get("digests"), datamodule.cohort.digests, f"the run {run_dir}", advice)
    recorded = []
    if ckpt_state and "splits" in ckpt_state:
        n = len(ids)
        if any(i >= n for v in ckpt_state["splits"].values() for i in v):
            raise InputError(f"{run_dir}: the checkpoint's split indexes more people than the {n} of the rebuilt "
                             "cohort; the data changed since training")
        recorded.append(("the checkpoint's", {k: [ids[i] for i in v] for k, v in ckpt_state["splits"].items()}))
    if (run_dir / "split.json").exists():
        try:
            saved = json.loads((run_dir / "split.json").read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise InputError(f"{run_dir / 'split.json'}: not the JSON a train run writes")
        check_digests(saved.get("digests"), datamodule.cohort.digests, f"the run {run_dir}", advice)
        recorded.append(("split.json's", {k: saved[k] for k in now if k in saved}))
    if not recorded:
        log.warning("%s: neither the checkpoint nor split.json records the split; it cannot be checked", run_dir)
    for what, then in recorded:
        compare_splits(run_dir, now, then, what)


def compare_splits(run_dir: Path, now: dict, then: dict, what: str) -> None:
    for name in ("train", "val", "test", "panel"):
        a, b = set(now.get(name, [])), set(then.get(name, []))
        if a != b:
            raise InputError(
                f"{run_dir}: the {name} split rebuilt from .hydra/config.yaml ({len(a)} people) is not "
                f"{what} ({len(b)} people, {len(a ^ b)} differ); the data, labels, cache or data.split_seed "
                "changed since training, so analysed people may have been trained on")

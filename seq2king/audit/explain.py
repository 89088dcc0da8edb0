"""Per-SNP importance with Captum, and what an audit run writes after its test.

Methods (``audit.importance``): ``integrated_gradients`` (from the all-zero input, the
mean genotype after standardisation), ``input_x_gradient`` (the published study's
gradient x input) and ``feature_permutation`` (each block of ``permutation_block``
adjacent SNPs shuffled across the test people together; every SNP of a block gets the
block's value: one forward pass per block instead of one per SNP). A SNP's importance is
the mean absolute attribution to the model's logit over the test people.

:class:`AuditWriter` writes ``predictions.csv`` (test people: sample, population,
phenotype, predicted probability) and ``importance.csv`` (variant, chrom, pos, one
column per method) into the run directory, after the best checkpoint is tested.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from seq2king.errors import InputError
from seq2king.fileio import atomic_files

log = logging.getLogger(__name__)

METHODS = ("integrated_gradients", "input_x_gradient", "feature_permutation")


def importances(module, dm, methods=METHODS, people: np.ndarray | None = None, steps: int = 32,
                permutation_block: int = 100, batch_size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """``{method: (snps,) mean |attribution|}`` of ``module`` on ``people`` (default: the test split)."""
    from captum.attr import FeaturePermutation, InputXGradient, IntegratedGradients
    from tqdm.auto import tqdm

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"audit.importance: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    people = dm.splits["test"] if people is None else people
    module.eval()
    idx = torch.as_tensor(people, dtype=torch.long)
    x_all, cov_all = dm.x[idx], dm.covariates[idx]

    def logit(x, cov):
        return module(x, cov)

    m = x_all.shape[1]
    out = {}
    torch.manual_seed(seed)
    for name in methods:
        total = torch.zeros(m, dtype=torch.float64)
        if name == "feature_permutation":
            block = max(1, int(permutation_block))
            mask = (torch.arange(m) // block)[None]
            # the whole analysed set in one batch: shuffles across people
            with torch.no_grad():
                attr = FeaturePermutation(logit).attribute(x_all, additional_forward_args=(cov_all,),
                                                           feature_mask=mask, perturbations_per_eval=4,
                                                           show_progress=True)
            total += attr.abs().double().sum(0)
        else:
            method = IntegratedGradients(logit) if name == "integrated_gradients" else InputXGradient(logit)
            for start in tqdm(range(0, len(people), batch_size), desc=name, leave=False):
                x = x_all[start:start + batch_size].clone().requires_grad_(True)
                cov = cov_all[start:start + batch_size]
                kwargs = {"n_steps": steps, "internal_batch_size": batch_size} if name == "integrated_gradients" else {}
                attr = method.attribute(x, additional_forward_args=(cov,), **kwargs)
                total += attr.detach().abs().double().sum(0)
        out[name] = (total / len(people)).numpy()
    return out


class AuditWriter(pl.Callback):
    """``predictions.csv`` and ``importance.csv`` after the test (rank zero only)."""

    after_test = True  # train.py keeps it on the single-device tester of a distributed run

    def __init__(self, out_dir: str, methods=METHODS, steps: int = 32, permutation_block: int = 100,
                 seed: int = 0):
        self.out_dir = Path(out_dir)
        self.methods, self.steps, self.block, self.seed = tuple(methods), steps, permutation_block, seed

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_predictions(self.out_dir / "predictions.csv", dm, pl_module.test_scores)
        with torch.inference_mode(False), torch.enable_grad():
            imp = importances(pl_module, dm, self.methods, steps=self.steps, permutation_block=self.block,
                              seed=self.seed)
        write_importance(self.out_dir / "importance.csv", dm.variants, imp)
        log.info("wrote %s and %s", self.out_dir / "predictions.csv", self.out_dir / "importance.csv")


def write_predictions(path: Path, dm, scores: dict[int, float]) -> None:
    with atomic_files(path) as (tmp,):
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["sample", "population", "phenotype", "score"])
            for i in sorted(scores):
                pop = dm.populations[i] if dm.populations is not None else ""
                w.writerow([dm.ids[i], pop, int(dm.y[i]), f"{scores[i]:.6g}"])


def write_importance(path: Path, variants: dict, imp: dict[str, np.ndarray]) -> None:
    with atomic_files(path) as (tmp,):
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["variant", "chrom", "pos", *imp])
            cols = list(imp.values())
            for j, (v, c, p) in enumerate(zip(variants["variant"], variants["chrom"], variants["pos"])):
                w.writerow([v, c, int(p), *(f"{col[j]:.6g}" for col in cols)])


def read_csv(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        raise InputError(f"{path}: not found; is this an audit run that finished its test?")
    with open(path, newline="", encoding="utf-8") as fh:
        first = fh.readline()
        fh.seek(0)
        rows = list(csv.reader(fh, delimiter="\t" if "\t" in first else ","))
    if not rows:
        raise InputError(f"{path}: empty")
    return {h: [r[k] for r in rows[1:]] for k, h in enumerate(rows[0])}

"""The library side of ``train.py`` and ``analyze.py``: what each command does, above every other layer.

:func:`train_command`: train one job (:func:`seq2king.training.run`, the multirun safety net
included); with ``analyze=true`` the run's analysis follows, inside the same net.
:func:`analyze_command`: the seq2king analysis of a run, the audit report of an audit run,
or ``compare=`` one table over a sweep; bad input or a file-system fault is one line and
exit 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seq2king.analysis.headline import headline_line
from seq2king.analysis.report import AnalysisSettings, analyze
from seq2king.audit.report import audit_line, audit_report
from seq2king.errors import error_line
from seq2king.sweep_table import compare
from seq2king.training import compose, run

log = logging.getLogger(__name__)


def train_command(cfg: DictConfig) -> float:
    """train.py: one job; returns the metric a sweep optimises."""
    return run(cfg, after=analyze_run if cfg.get("analyze") else None)


def analyze_run(cfg: DictConfig) -> dict | None:
    """``analyze=true``: analyze.py's default analysis of the run just trained, into its directory (the
    analysis, or the audit report for an audit run), from the shipped ``analyze`` config."""
    log.info("analyze=true: analysing %s", cfg.paths.output_dir)
    return analyze_or_compare(compose("analyze", [f"run_dir={cfg.paths.output_dir}"]))


def analyze_command(cfg: DictConfig) -> dict | None:
    """analyze.py: the analysis, the audit report or a sweep's table; bad input or a file-system fault is one
    line and exit 2."""
    try:
        return analyze_or_compare(cfg)
    except Exception as e:
        line = error_line(e)
        if line is None:
            raise
        print(f"seq2king: error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def analyze_or_compare(cfg: DictConfig) -> dict | None:
    """:func:`analyze_command` without the error handling (errors propagate)."""
    if cfg.get("compare"):
        rows = compare(Path(cfg.compare))
        print(f"compared {len(rows)} runs: {cfg.compare}/compare.csv and compare.md")
        return None
    if cfg.get("run_dir") and _is_audit(Path(cfg.run_dir)):
        s = audit_report(cfg.run_dir, top_k=cfg.get("top_k"), rank_by=cfg.get("rank_by"),
                         wandb_log=cfg.get("wandb", True))
        print(audit_line(s), flush=True)
        print(f"analysis in {s['analysis_dir']}", flush=True)
        return s
    a = cfg.analysis
    levels = a.get("levels")
    settings = AnalysisSettings(split=cfg.split, max_sequence=a.max_sequence, coverage=a.coverage,
                                permutations=a.permutations, bootstrap=a.bootstrap, inversion=a.inversion,
                                levels=tuple(levels) if levels else None,
                                bertviz_people=a.bertviz_people, n_clusters=a.n_clusters, umap=a.get("umap", True),
                                max_people=a.get("max_people"), seed=cfg.seed, device=a.device)
    summary = analyze(cfg.get("run_dir"), cfg.get("ckpt_path"), settings, wandb_log=cfg.get("wandb", True))
    print(headline_line(summary), flush=True)
    print(f"analysis in {summary['analysis_dir']}", flush=True)
    return summary


def _is_audit(run_dir: Path) -> bool:
    path = run_dir / ".hydra" / "config.yaml"
    return path.exists() and "audit" in OmegaConf.load(path)

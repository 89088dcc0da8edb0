"""Library side of analyze.py: one analysis, or a comparison table over a sweep."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seq2king.errors import InputError

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict | None:
    from seq2king.analysis.report import AnalysisSettings, analyze, headline_line
    from seq2king.training import _input_error

    try:
        if cfg.get("compare"):
            rows = compare(Path(cfg.compare))
            print(f"compared {len(rows)} runs: {cfg.compare}/compare.csv and compare.md")
            return None
        a = cfg.analysis
        settings = AnalysisSettings(split=cfg.split, max_sequence=a.max_sequence, coverage=a.coverage,
                                    permutations=a.permutations, inversion=a.inversion,
                                    bertviz_people=a.bertviz_people, n_clusters=a.n_clusters,
                                    seed=cfg.seed, device=a.device)
        summary = analyze(cfg.get("run_dir"), cfg.get("ckpt_path"), settings, wandb_log=cfg.get("wandb", True))
    except Exception as e:
        bad = _input_error(e)
        if bad is None:
            raise
        print(f"seq2king: error: {bad}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    print(headline_line(summary), flush=True)
    print(f"analysis in {summary['analysis_dir']}", flush=True)
    return summary


def compare(sweep_dir: Path) -> list[dict]:
    """One row per job of a multirun: its overrides, final metrics and headline figures."""
    from seq2king.fileio import atomic_files

    if not sweep_dir.is_dir():
        raise InputError(f"compare={sweep_dir}: not a directory")
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").exists()),
                      key=lambda p: (len(p.name), p.name)):
        overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        row = {"job": job.name, "overrides": " ".join(str(o) for o in overrides)}
        for o in overrides:
            k, _, v = str(o).partition("=")
            row[k.lstrip("+~")] = v
        metrics = job / "metrics.json"
        if metrics.exists():
            m = json.loads(metrics.read_text())
            row.update({k: round(v, 5) for k, v in m.items() if k in ("val/loss", "val/skill", "test/loss",
                                                                     "test/skill")})
        summ = job / "analysis" / "summary.json"
        if summ.exists():
            s = json.loads(summ.read_text())
            h = s.get("headline") or {}
            row.update({"headline": f"L{h.get('layer')} H{h.get('head')} {h.get('scheme')}",
                        "intra_share": round(h.get("intra_share", float("nan")), 4),
                        "lift": round(h.get("lift", float("nan")), 3), "p_value": h.get("p_value"),
                        "untrained": round(s["baselines"]["untrained"]["intra_share"], 4),
                        "softmax_king": round(s["baselines"]["softmax_king"]["intra_share"], 4),
                        "knn5": round(s["embedding"]["knn5_accuracy"], 4)} if h else {})
        rows.append(row)
    if not rows:
        raise InputError(f"compare={sweep_dir}: no job directories with .hydra/overrides.yaml")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_files(sweep_dir / "compare.csv", sweep_dir / "compare.md") as (c, md):
        with open(c, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in cols) + " |" for r in rows]
        md.write_text("\n".join(lines) + "\n")
    return rows

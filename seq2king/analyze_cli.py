"""Library side of analyze.py: it dispatches, above both tasks.

A run of the confounding audit gets the audit report (:mod:`seq2king.audit.report`),
any other run the seq2king analysis (:mod:`seq2king.analysis.report`); ``compare=``
makes one table over a sweep of either. Kept out of ``seq2king/analysis`` so that
the analysis package never imports the audit, which sits above it.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seq2king.errors import InputError, error_line

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict | None:
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
    """:func:`run` without the error handling (errors propagate; train.py's ``analyze=true`` calls this)."""
    from seq2king.analysis.report import AnalysisSettings, analyze, headline_line

    if cfg.get("compare"):
        rows = compare(Path(cfg.compare))
        print(f"compared {len(rows)} runs: {cfg.compare}/compare.csv and compare.md")
        return None
    if cfg.get("run_dir") and _is_audit(Path(cfg.run_dir)):
        from seq2king.audit.report import audit_report

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


def audit_line(s: dict) -> str:
    a, o, p = s["auroc"], s["oracle_auroc"], s["precision_at_k"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    line = (f"audit ({s['arch']}, correction {s['correction']}): test AUROC {f(a['overall'])} overall, "
            f"{f(a['within_population'])} within population; ancestry alone {f(s['ancestry_auroc'])}")
    if o:
        line += f"; oracle {f(o['overall'])} / {f(o['within_population'])}"
    if p:
        line += (f"; precision@{p['k']} {p['value']:.3f} (chance {p['chance']:.3f}, p = {p['p_value']:.2g})")
    if s["shortcut_index"] is not None:
        line += f"; shortcut index {s['shortcut_index']:.2f}"
    return line


def audit_row(s: dict) -> dict:
    """The audit figures of one job, for the sweep table."""
    p = s.get("precision_at_k") or {}
    o = s.get("oracle_auroc") or {}
    r = lambda x: None if x is None else round(x, 4)  # noqa: E731
    return {"correction": s["correction"], "arch": s["arch"], "auroc_overall": r(s["auroc"]["overall"]),
            "auroc_within_population": r(s["auroc"]["within_population"]), "accuracy": r(s["accuracy"]),
            "ancestry_auroc": r(s["ancestry_auroc"]), "oracle_within_population": r(o.get("within_population")),
            "precision_at_k": r(p.get("value")), "chance": r(p.get("chance")), "p_value": p.get("p_value"),
            "shortcut_index": r(s["shortcut_index"])}


def summary_row(s: dict) -> dict:
    """Headline, attention baselines and every embedding peer of one analysis, for each label level."""
    row = {}
    levels = s.get("levels") or {}
    for level, b in levels.items():
        pre = "" if level == s.get("label_column") else f"{level}:"
        h = b["headline"]
        row[f"{pre}headline"] = f"L{h['layer']} H{h['head']} {h['scheme']}"
        row[f"{pre}intra_share"] = round(h["intra_share"], 4)
        row[f"{pre}lift"] = round(h["lift"], 3)
        row[f"{pre}p_value"] = h["p_value"]
        row[f"{pre}untrained"] = round(b["baselines"]["untrained"]["intra_share"], 4)
        for name, base in b["baselines"].items():
            if name.startswith("softmax_"):
                row[f"{pre}{name}"] = round(base["intra_share"], 4)
        row[f"{pre}vs_softmax_king_ci95"] = "[{:+.3f}, {:+.3f}]".format(*b["comparisons"]["softmax_king"]["ci95"])
        strong = (b.get("strongest") or {}).get("attention")
        if strong:  # the claim that counts: the margin over the strongest parameter-free baseline
            row[f"{pre}strongest_baseline"] = strong
            row[f"{pre}vs_strongest_ci95"] = "[{:+.3f}, {:+.3f}]".format(*b["comparisons"][strong]["ci95"])
        row[f"{pre}knn5"] = round(b["embedding"]["knn5_accuracy"], 4)
        for name, e in b["embedding_baselines"].items():
            row[f"{pre}knn5_{name}"] = round(e["knn5_accuracy"], 4)
    return row


def _read_json(path: Path) -> dict:
    """A JSON object a run wrote; a torn or foreign file is one line naming it."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not the JSON object seq2king writes (torn or edited?); run that job's "
                         "analysis again or remove its directory from the sweep")
    return obj


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
        failed = job / "FAILED"  # written by a job that failed in the multirun (seq2king.training)
        row["status"] = f"failed: {failed.read_text().strip()}" if failed.exists() else "ok"
        metrics = job / "metrics.json"
        if metrics.exists():
            m = _read_json(metrics)
            row.update({k: round(v, 5) for k, v in m.items() if k in (
                "val/loss", "val/skill", "test/loss", "test/skill", "val/auroc", "test/auroc",
                "val/intra_share", "val/lift", "val/top1", "val/knn5")})  # the structure callback's, to sort by
        for path, to_row in ((job / "analysis" / "summary.json", summary_row),
                             (job / "analysis" / "audit.json", audit_row)):
            if path.exists():
                try:
                    row.update(to_row(_read_json(path)))
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    if isinstance(e, InputError):
                        raise
                    raise InputError(f"{path}: lacks the fields seq2king writes ({type(e).__name__}: {e}); "
                                     "run that job's analysis again") from None
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
    if any("auroc_overall" in r for r in rows):
        from seq2king.audit.report import compare_plot

        compare_plot(sweep_dir / "compare_auroc.png", rows)
    return rows

"""One table over a sweep: ``python analyze.py compare=outputs/train/multiruns/<sweep>``.

A row per job of the multirun: its overrides, its final metrics, and the headline
figures of its analysis (``analysis/summary.json``) or audit report
(``analysis/audit.json``), at every label level (``compare.csv``, ``compare.md``). In an
audit sweep each correction's within-population AUROC is also paired with the
uncorrected job of the same settings (same test people: a paired bootstrap interval).
A sweep over seeds gets ``compare_over_seeds.csv/.md`` too: every figure's mean over
the seeds of each setting, with a 95% t-interval.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy.stats import t as t_dist

from seq2king.audit.explain import read_csv
from seq2king.audit.intervals import paired_within_difference, pooled_paired_within_difference
from seq2king.audit.report import audit_row, compare_plot
from seq2king.errors import InputError
from seq2king.fileio import atomic_files
from seq2king.training import FAILED_FILE


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
    """One row per job of a multirun: its overrides, final metrics and headline figures; writes
    ``compare.csv``, ``compare.md`` and, for audit sweeps, ``compare_auroc.png``."""
    if not sweep_dir.is_dir():
        raise InputError(f"compare={sweep_dir}: not a directory")
    rows, jobs = [], {}
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").exists()),
                      key=lambda p: (len(p.name), p.name)):
        try:
            overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
        except Exception:  # a torn YAML: whatever the parser met
            raise InputError(f"{job / '.hydra' / 'overrides.yaml'}: not the YAML list Hydra writes") from None
        row = {"job": job.name, "overrides": " ".join(str(o) for o in overrides)}
        settings = {}
        for o in overrides:
            k, _, v = str(o).partition("=")
            settings[k.lstrip("+~")] = v
        row.update(settings)
        jobs[job.name] = (job, settings)
        failed = job / FAILED_FILE  # written by a job that failed in the multirun
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
    if any("auroc_overall" in r for r in rows):
        _paired_with_uncorrected(rows, jobs)
    _write_table(sweep_dir / "compare", rows)
    grouped = over_seeds(rows, {k for _, settings in jobs.values() for k in settings}, jobs)
    if grouped:
        _write_table(sweep_dir / "compare_over_seeds", grouped)
    if any("auroc_overall" in r for r in rows):
        compare_plot(sweep_dir / "compare_auroc.png", rows)
    return rows


def _write_table(stem: Path, rows: list[dict]) -> None:
    """``STEM.csv`` and ``STEM.md``, both or neither."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_files(f"{stem}.csv", f"{stem}.md") as (c, md):
        with open(c, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in cols) + " |" for r in rows]
        md.write_text("\n".join(lines) + "\n")


def _predictions(job: Path):
    path = job / "predictions.csv"
    if not path.exists():
        return None
    p = read_csv(path)
    return (list(p["sample"]), np.array(p["score"], dtype=float), np.array(p["phenotype"], dtype=float).astype(int),
            np.array(p["population"]))


def _reference(jobs: dict, settings: dict) -> Path | None:
    """The ``audit.correction=none`` job with the same other settings, if the sweep has it."""
    want = {k: v for k, v in settings.items() if k != "audit.correction"}
    for job, other in jobs.values():
        if other.get("audit.correction", "none") == "none" and {k: v for k, v in other.items()
                                                                  if k != "audit.correction"} == want:
            return job
    return None


def _paired_with_uncorrected(rows: list[dict], jobs: dict) -> None:
    """Audit sweeps: each job's within-population AUROC minus that of the ``audit.correction=none`` job with the
    same other settings, on the same test people, with a paired bootstrap interval (``within_vs_none``)."""
    for row in rows:
        job, settings = jobs[row["job"]]
        ref = _reference(jobs, settings)
        if ref is None or ref == job:
            continue
        a, b = _predictions(job), _predictions(ref)
        if a is None or b is None or a[0] != b[0]:
            continue  # no predictions, or not the same people: nothing to pair
        d = paired_within_difference(a[1], b[1], a[2], a[3])
        row["within_vs_none"] = round(d["difference"], 4)
        row["within_vs_none_ci95"] = "[{:+.3f}, {:+.3f}]".format(*d["ci95"])
        row["within_vs_none_p"] = round(d["p_value"], 4)


SEED_KEYS = ("seed", "data.split_seed", "data.scenario.trait_seed", "data.scenario.seed", "data.simulation.seed")


def over_seeds(rows: list[dict], override_keys: set[str], jobs: dict | None = None) -> list[dict]:
    """When a sweep varies a seed (``seed``, ``data.split_seed``, ``data.scenario.trait_seed``...): one row per
    setting of everything else, each figure's mean over the seeds and its 95% t-interval half-width (``±``). In
    an audit sweep, also the within-population AUROC minus the uncorrected job's, with a paired bootstrap interval
    pooled over the seeds' test people (``within_vs_none_pooled``)."""
    varied = [k for k in SEED_KEYS if len({r.get(k) for r in rows}) > 1]
    if not varied:
        return []
    settings = sorted(override_keys - set(varied))
    figures = [k for k in dict.fromkeys(k for r in rows for k in r)
               if k not in override_keys and all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool)
                                                 for r in rows if r.get(k) is not None)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok":
            groups.setdefault(tuple(r.get(k) for k in settings), []).append(r)
    out = []
    for key, members in groups.items():
        row = {k: v for k, v in zip(settings, key)}
        row["seeds"] = len(members)
        for f in figures:
            v = np.array([m[f] for m in members if m.get(f) is not None], dtype=float)
            if not len(v):
                continue
            half = float(t_dist.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
            row[f] = round(float(v.mean()), 4)
            row[f"{f} ±"] = round(half, 4)
        if jobs is not None and any("within_vs_none" in m for m in members):
            sets = []
            for m in members:
                job, job_settings = jobs[m["job"]]
                ref = _reference(jobs, job_settings)
                a, b = _predictions(job), (_predictions(ref) if ref is not None else None)
                if a is not None and b is not None and a[0] == b[0]:
                    sets.append((a[1], b[1], a[2], a[3]))
            if sets:
                d = pooled_paired_within_difference(sets)
                row["within_vs_none_pooled"] = round(d["difference"], 4)
                row["within_vs_none_pooled_ci95"] = "[{:+.3f}, {:+.3f}]".format(*d["ci95"])
                row["within_vs_none_pooled_p"] = round(d["p_value"], 4)
        out.append(row)
    return out

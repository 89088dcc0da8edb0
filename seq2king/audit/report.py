"""The audit report of one run (``python analyze.py run_dir=RUN`` on an audit run).

Reads the run's ``predictions.csv`` and ``importance.csv``, rebuilds its data (same
split, checked against ``split.json``) and writes ``analysis/audit.json``:

- ``auroc``: ``overall``; ``per_population`` (AUROC inside each population with cases
  and controls); ``within_population`` (their mean): what is left once the ancestry
  shortcut cannot help; ``within_population_ci95`` and ``within_population_verdict``
  (at / above / below chance: a 95% bootstrap interval of the test people, resampled
  within population x class, :mod:`~seq2king.audit.intervals`), ``per_population_detail``
  (each population's AUROC, interval, verdict, cases and controls). Also ``accuracy`` at
  0.5 and ``rule_accuracy`` (the rule "the population with most cases = case", Dagasso
  et al.'s 0.913).
- ``ancestry_auroc``: logistic regression on the genotype PCs alone (training people),
  scored on the test people: how far the shortcut alone goes; inside populations too,
  with its interval and verdict.
- ``oracle_auroc``: the true genetic value (from the causal file) as the score.
- ``precision_at_k``: share of the ``k`` most important SNPs (``rank_by``) that are causal,
  its ``chance`` (causal / SNPs) and the hypergeometric ``p_value`` of that many hits or more.
- ``shortcut_index``: mean Fst of the top-``k`` SNPs over the mean Fst of all SNPs: above 1
  the model ranks ancestry-informative SNPs first.

Plots: ``importance_genome.png`` (importance along the genome, coloured by Fst, causal
SNPs ringed) and ``auroc.png`` (overall, within population, ancestry ceiling, oracle).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from seq2king.analysis.runs import compare_splits
from seq2king.analysis.writers import log_wandb, pyplot, save_figure
from seq2king.audit.explain import read_csv
from seq2king.audit.intervals import within_report
from seq2king.data.cohort import check_digests
from seq2king.errors import InputError
from seq2king.fileio import write_json
from seq2king.genetics.simulate import fst_per_variant

log = logging.getLogger(__name__)

# Dagasso et al. (J Biomed Inform 2025), their simulation: test accuracy of the CNN
PUBLISHED = {"uncorrected": 0.957, "input_corrected": 0.913, "feature_corrected": 0.768, "rule": 0.913}
SHORTCUT_NOTE = ("mean Fst between the populations of the model's top-k SNPs over the mean Fst of all SNPs: 1 when its "
                 "ranking ignores ancestry, above 1 when ancestry-informative SNPs come first (the shortcut), below 1 "
                 "when it avoids them; read it beside the within-population AUROC, which says whether what the model "
                 "ranks by still separates cases from controls once ancestry cannot help")


def auroc(score: np.ndarray, y: np.ndarray) -> float:
    """Binary AUROC (torchmetrics), NaN when ``y`` has one class only."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(binary_auroc(torch.as_tensor(np.asarray(score, dtype=np.float64)), torch.as_tensor(y).long()))


def group_auroc(score: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> dict:
    """``{overall, within_population, per_population}``: per group where it has both classes."""
    out = {"overall": auroc(score, y), "within_population": None, "per_population": {}}
    if groups is None:
        return out
    for g in sorted(set(groups)):
        sel = groups == g
        a = auroc(score[sel], y[sel])
        if not np.isnan(a):
            out["per_population"][str(g)] = a
    if out["per_population"]:
        out["within_population"] = float(np.mean(list(out["per_population"].values())))
    return out


def precision_at_k(ranked: np.ndarray, causal: np.ndarray, k: int) -> dict:
    """Share of the top ``k`` of ``ranked`` (indices, best first) in ``causal`` (a boolean mask)."""
    from scipy.stats import hypergeom

    m, n_causal = len(causal), int(causal.sum())
    k = min(k, m)
    hits = int(causal[ranked[:k]].sum())
    return {"k": k, "hits": hits, "value": hits / k, "chance": n_causal / m,
            "p_value": float(hypergeom.sf(hits - 1, m, n_causal, k))}


def shortcut_index(ranked: np.ndarray, fst: np.ndarray, k: int) -> float:
    return float(np.mean(fst[ranked[:k]]) / np.mean(fst))


def _causal_mask(path: str | None, variants: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Causal mask over ``variants`` and each variant's effect per ALT allele (0 if not causal)."""
    if not path:
        return None, None
    table = read_csv(Path(path))
    if "variant" not in table or "effect" not in table:
        raise InputError(f"{path}: a causal file needs variant and effect columns")
    where = {v: j for j, v in enumerate(variants)}
    effect = np.zeros(len(variants))
    for v, b in zip(table["variant"], table["effect"]):
        if v in where:
            effect[where[v]] = float(b)
    return effect != 0, effect


def audit_report(run_dir: str | Path, top_k: int | None = None, rank_by: str | None = None,
                 wandb_log: bool = True) -> dict:
    import hydra
    from omegaconf import OmegaConf
    from sklearn.linear_model import LogisticRegression

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    a = cfg.audit
    k = int(top_k or a.top_k)
    rank_by = rank_by or a.rank_by
    preds = read_csv(run_dir / "predictions.csv")
    imp = read_csv(run_dir / "importance.csv")
    methods = [c for c in imp if c not in ("variant", "chrom", "pos")]
    if rank_by not in methods:
        raise InputError(f"audit.rank_by={rank_by!r}: {run_dir}/importance.csv has {', '.join(methods)}")
    # the run's data, without its correction: PCs, genotypes, populations, the split
    dm = hydra.utils.instantiate(cfg.data, correction="none", ancestry_run=None)
    dm.setup()
    _check_split(run_dir, dm)
    where = {iid: i for i, iid in enumerate(dm.ids)}
    test = np.array([where[s] for s in preds["sample"]])
    train = dm.splits["train"]
    score = np.array(preds["score"], dtype=float)
    y = dm.y[test]
    pops = dm.populations[test] if dm.populations is not None else None
    if list(imp["variant"]) != list(dm.variants["variant"]):
        raise InputError(f"{run_dir}/importance.csv: its variants are not the run's data's")

    out = run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run_dir": str(run_dir), "correction": str(a.correction), "arch": str(cfg.model.arch),
               "n_test": int(len(test)), "n_cases_test": int(y.sum()), "n_snps": int(len(imp["variant"]))}
    summary["auroc"] = group_auroc(score, y, pops)
    if pops is not None:  # inside populations, with intervals: is the ranking there above, at or below chance?
        w = within_report(score, y, pops, seed=int(cfg.get("seed", 0)))
        summary["auroc"].update(within_population_ci95=w["within_ci95"], within_population_verdict=w["within_verdict"],
                                per_population_detail=w["per_population"])
    summary["accuracy"] = float(np.mean((score > 0.5) == (y == 1)))
    if pops is not None:  # "the population with the most cases is the case"
        rate = {p: dm.y[train][dm.populations[train] == p].mean() for p in set(dm.populations[train])}
        case_pop = max(rate, key=rate.get)
        summary["rule_accuracy"] = float(np.mean((pops == case_pop) == (y == 1)))
    clf = LogisticRegression(max_iter=1000).fit(dm.pcs[train].numpy(), dm.y[train])
    anc = clf.predict_proba(dm.pcs[test].numpy())[:, 1]
    summary["ancestry_auroc"] = auroc(anc, y)
    summary["ancestry_auroc_within_population"] = group_auroc(anc, y, pops)["within_population"]
    if pops is not None:
        w = within_report(anc, y, pops, seed=int(cfg.get("seed", 0)))
        summary["ancestry_auroc_within_population_ci95"] = w["within_ci95"]
        summary["ancestry_auroc_within_population_verdict"] = w["within_verdict"]

    causal, effect = _causal_mask(dm.causal_path, list(dm.variants["variant"]))
    if causal is not None and causal.any():
        g = dm.genotypes[test].astype(np.float64) @ effect
        o = group_auroc(g, y, pops)
        summary["oracle_auroc"] = {"overall": o["overall"], "within_population": o["within_population"]}
    else:
        summary["oracle_auroc"] = None
    fst = fst_per_variant(dm.genotypes.T, dm.populations) if dm.populations is not None else None
    per_method = {}
    for name in methods:
        values = np.array(imp[name], dtype=float)
        ranked = np.argsort(-values, kind="stable")
        per_method[name] = {
            "precision_at_k": precision_at_k(ranked, causal, k) if causal is not None and causal.any() else None,
            "shortcut_index": shortcut_index(ranked, fst, k) if fst is not None else None}
    summary["rank_by"] = rank_by
    summary["precision_at_k"] = per_method[rank_by]["precision_at_k"]
    summary["shortcut_index"] = per_method[rank_by]["shortcut_index"]
    summary["shortcut_index_note"] = SHORTCUT_NOTE
    summary["importance"] = per_method
    summary["published"] = {"test_accuracy": PUBLISHED, "source": "Dagasso et al., J Biomed Inform 2025"}
    write_json(out / "audit.json", summary)
    _plots(out, summary, np.array(imp[rank_by], dtype=float), np.asarray(dm.variants["pos"]), fst, causal)
    if wandb_log:
        try:
            log_wandb(run_dir, out, {}, flat=flatten(summary, "audit"))
        except Exception:  # W&B is a mirror; the report on disk stands
            log.exception("could not log the audit report to W&B")
    summary["analysis_dir"] = str(out)
    return summary


def flatten(d: dict, prefix: str) -> dict:
    flat = {}
    for key, v in d.items():
        name = f"{prefix}/{key}"
        if isinstance(v, dict):
            flat.update(flatten(v, name))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[name] = v
    return flat


def _check_split(run_dir: Path, dm) -> None:
    import json

    path = run_dir / "split.json"
    if path.exists():
        saved = json.loads(path.read_text())
        check_digests(saved.get("digests"), dm.digests, f"the run {run_dir}",
                      "analyse it with the data it was trained on, or train again")
        compare_splits(run_dir, dm.split_summary(), saved, "split.json's")


def _plots(out: Path, s: dict, importance: np.ndarray, pos: np.ndarray, fst, causal) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.6))
    x = np.arange(len(importance))
    col = fst if fst is not None else np.zeros(len(importance))
    sc = ax.scatter(x, importance, c=col, s=5, cmap="viridis", rasterized=True)
    if causal is not None:
        ax.scatter(x[causal], importance[causal], s=28, facecolors="none", edgecolors="crimson", linewidths=0.8,
                   label="causal")
        ax.legend(loc="upper right", fontsize=8)
    if fst is not None:
        fig.colorbar(sc, ax=ax, label="Fst")
    pk = s["precision_at_k"]
    ax.set_title(f"{s['arch']}, correction {s['correction']}: {s['rank_by']} per SNP"
                 + (f"; precision@{pk['k']} {pk['value']:.2f} (chance {pk['chance']:.3f}, p = {pk['p_value']:.2g})" if pk else "")
                 + (f"; shortcut index {s['shortcut_index']:.2f}" if s["shortcut_index"] is not None else ""),
                 fontsize=9)
    ax.set_xlabel("SNP (genome order)")
    ax.set_ylabel("mean |attribution|")
    save_figure(fig, out / "importance_genome.png")

    bars = {"overall": s["auroc"]["overall"], "within population": s["auroc"]["within_population"],
            "ancestry (PCs only)": s["ancestry_auroc"]}
    if s["oracle_auroc"]:
        bars["oracle overall"] = s["oracle_auroc"]["overall"]
        bars["oracle within"] = s["oracle_auroc"]["within_population"]
    bars = {k: v for k, v in bars.items() if v is not None}
    ci = {"within population": s["auroc"].get("within_population_ci95")}
    err = np.array([[v - ci[k][0], ci[k][1] - v] if ci.get(k) else [0.0, 0.0] for k, v in bars.items()]).T
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(list(bars), list(bars.values()), yerr=err, capsize=4, color=["C0", "C1", "C7", "C2", "C2"][:len(bars)])
    if s["auroc"].get("within_population_verdict"):
        ax.text(1, 0.04, s["auroc"]["within_population_verdict"], ha="center", fontsize=8, color="white")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test AUROC")
    ax.set_title(f"{s['arch']}, correction {s['correction']}", fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    save_figure(fig, out / "auroc.png")


def compare_plot(path: Path, rows: list[dict]) -> None:
    """AUROC overall against within population, one point per job of a sweep."""
    pts = [r for r in rows if r.get("auroc_overall") is not None]
    if not pts:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for r in pts:
        ax.scatter(r["auroc_overall"], r.get("auroc_within_population") or np.nan, s=40)
        ax.annotate(str(r.get("correction", r["job"])), (r["auroc_overall"], r.get("auroc_within_population") or 0.5),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.plot([0.4, 1], [0.4, 1], color="0.7", lw=0.8)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xlabel("test AUROC overall")
    ax.set_ylabel("test AUROC within population")
    ax.set_title("audit sweep: the shortcut lifts the overall AUROC only", fontsize=9)
    save_figure(fig, path)


def audit_line(s: dict) -> str:
    a, o, p = s["auroc"], s["oracle_auroc"], s["precision_at_k"]

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    within = f(a["within_population"])
    if a.get("within_population_ci95"):
        lo, hi = a["within_population_ci95"]
        within += f" [{lo:.3f}, {hi:.3f}] ({a['within_population_verdict']})"
    line = (f"audit ({s['arch']}, correction {s['correction']}): test AUROC {f(a['overall'])} overall, "
            f"{within} within population; ancestry alone {f(s['ancestry_auroc'])}")
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
    ci = s["auroc"].get("within_population_ci95")
    return {"correction": s["correction"], "arch": s["arch"], "auroc_overall": r(s["auroc"]["overall"]),
            "auroc_within_population": r(s["auroc"]["within_population"]),
            "within_ci95": "[{:.3f}, {:.3f}]".format(*ci) if ci else None,
            "within_verdict": s["auroc"].get("within_population_verdict"), "accuracy": r(s["accuracy"]),
            "ancestry_auroc": r(s["ancestry_auroc"]), "oracle_within_population": r(o.get("within_population")),
            "precision_at_k": r(p.get("value")), "chance": r(p.get("chance")), "p_value": p.get("p_value"),
            "shortcut_index": r(s["shortcut_index"])}

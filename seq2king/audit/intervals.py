"""AUROC inside populations with bootstrap intervals, and a verdict against chance.

Inside one population a model should rank cases above controls only by what is not
ancestry. How far that ranking is from chance (0.5) is only readable with its noise:
an ascertained study has few people of the minority class in each population (about
20 cases of the control-rich population in the embedded scenario's test people), so a
single AUROC there moves by about +-0.07. Every figure here comes with a 95% percentile
interval from a bootstrap of the test people, resampled within each population x class
cell (the cells keep their sizes, as the study's design fixes them). Several scores of
the same people (two corrections of one split) are resampled together, so their
difference has a paired interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

CHANCE = 0.5


def rank_auroc(score: np.ndarray, y: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic (ties count half); NaN with one class only."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    r = rankdata(score)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def verdict(ci: list[float] | tuple[float, float]) -> str:
    """``at chance`` when the interval covers 0.5, else ``above chance`` or ``below chance``."""
    lo, hi = ci
    if lo > CHANCE:
        return "above chance"
    if hi < CHANCE:
        return "below chance"
    return "at chance"


def _cells(y: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero((groups == g) & (y == c)) for g in sorted(set(groups)) for c in (0, 1)]


def within_bootstrap(scores: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                     seed: int = 0) -> dict[str, dict]:
    """Per score: ``per_population`` {pop: AUROC}, ``within`` (their mean over populations with both classes)
    and ``boot_within`` (n_boot,) the mean on resamples shared by every score."""
    y, groups = np.asarray(y).astype(int), np.asarray(groups)
    pops = [g for g in sorted(set(groups)) if len(set(y[groups == g])) == 2]
    rng = np.random.default_rng(seed)
    cells = _cells(y, groups)
    resamples = [np.concatenate([rng.choice(c, len(c)) for c in cells if len(c)]) for _ in range(n_boot)]
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        per = {str(p): rank_auroc(s[groups == p], y[groups == p]) for p in pops}
        boot_per = np.array([[rank_auroc(s[idx][groups[idx] == p], y[idx][groups[idx] == p]) for p in pops]
                             for idx in resamples])  # (n_boot, pops)
        out[name] = {"per_population": per, "boot_per_population": boot_per,
                     "within": float(np.mean(list(per.values()))) if per else None,
                     "boot_within": boot_per.mean(1) if per else None}
    return out


def interval(values: np.ndarray) -> list[float]:
    return [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]


def within_report(score: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """The within-population AUROC of one score with intervals and verdicts: ``{within, within_ci95,
    within_verdict, per_population: {pop: {auroc, ci95, verdict, cases, controls}}}``."""
    b = within_bootstrap({"s": score}, y, groups, n_boot, seed)["s"]
    y, groups = np.asarray(y).astype(int), np.asarray(groups)
    per = {}
    for k, (pop, a) in enumerate(b["per_population"].items()):
        ci = interval(b["boot_per_population"][:, k])
        sel = groups == pop
        per[pop] = {"auroc": a, "ci95": ci, "verdict": verdict(ci), "cases": int(y[sel].sum()),
                    "controls": int((y[sel] == 0).sum())}
    if b["within"] is None:
        return {"within": None, "within_ci95": None, "within_verdict": None, "per_population": per}
    ci = interval(b["boot_within"])
    return {"within": b["within"], "within_ci95": ci, "within_verdict": verdict(ci), "per_population": per}


def paired_within_difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, groups: np.ndarray,
                             n_boot: int = 2000, seed: int = 0) -> dict:
    """Within-population AUROC of score ``a`` minus that of ``b`` on the same people, with a paired interval
    (both scored on every resample) and the one-sided bootstrap p of "a is not above b"."""
    both = within_bootstrap({"a": a, "b": b}, y, groups, n_boot, seed)
    d = both["a"]["boot_within"] - both["b"]["boot_within"]
    return {"difference": both["a"]["within"] - both["b"]["within"], "ci95": interval(d),
            "p_value": float((1 + np.sum(d <= 0)) / (1 + len(d)))}


def pooled_paired_within_difference(sets: list[tuple], n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`paired_within_difference` over several splits at once: ``sets`` holds ``(a, b, y, groups)`` per split
    (two scores of the same test people), the figure is the mean over splits of a's within-population AUROC minus
    b's, and every resample redraws each split's people within its population x class cells, all splits together:
    the interval of the mean difference given the trained models, tighter than a t-interval over few seeds."""
    boots, diffs = [], []
    for k, (a, b, y, groups) in enumerate(sets):
        both = within_bootstrap({"a": a, "b": b}, y, groups, n_boot, seed + k)
        diffs.append(both["a"]["within"] - both["b"]["within"])
        boots.append(both["a"]["boot_within"] - both["b"]["boot_within"])
    d = np.mean(boots, axis=0)
    return {"difference": float(np.mean(diffs)), "ci95": interval(d), "p_value": float((1 + np.sum(d <= 0)) / (1 + len(d))),
            "splits": len(sets)}

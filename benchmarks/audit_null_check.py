"""Is the audit's scenario null inside populations? Ancestry against case status, over seeds.

    .venv/bin/python benchmarks/audit_null_check.py                   # the null scenario (h2 = 0)
    .venv/bin/python benchmarks/audit_null_check.py --h2 0.7          # the confounded one
    .venv/bin/python benchmarks/audit_null_check.py --seq2king        # with seq2king's embedding covariates

For each trait seed (``data.scenario.trait_seed``) the scenario's ascertained people are
tested SNP by SNP inside each population (a trend test of each SNP on case status): the
genomic inflation lambda_GC is 1 when cases and controls are exchangeable inside the
population, above 1 when something genetic (ancestry or causal SNPs) separates them.
Then for each split seed (``data.split_seed``) the audit's own ancestry covariates, the
10 genotype PCs (and with ``--seq2king`` the embedding covariates of seq2king's cached
ancestry model, trained on first use), are scored inside each population against case
status on training and on test people: each PC alone, and the logistic regression on all
of them (the report's ``ancestry_auroc``). Mean, sd and 95% t-interval over the seeds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from scipy.stats import chi2
from scipy.stats import t as t_dist
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]


def lambda_gc(g: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(lambda_GC, max chi2) of the trend test of every polymorphic SNP on ``y``."""
    g = g[:, g.std(0) > 0].astype(np.float64)
    r = ((g - g.mean(0)) * (y - y.mean())[:, None]).mean(0) / (g.std(0) * y.std())
    stat = len(y) * r ** 2
    return float(np.median(stat) / chi2.ppf(0.5, 1)), float(stat.max())


def summary(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    half = t_dist.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f} sd, 95% CI [{v.mean() - half:.3f}, {v.mean() + half:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h2", type=float, default=0.0)
    ap.add_argument("--trait-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seq2king", action="store_true", help="also seq2king's embedding covariates (trains its "
                    "ancestry model for each split on first use, then reads it from the cache)")
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache" / "seq2king"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    logging.disable(logging.INFO)
    from seq2king.audit.data import AuditDataModule
    from seq2king.audit.intervals import rank_auroc
    from seq2king.audit.scenario import load_scenario
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.labels import read_labels
    from seq2king.genetics.traits import read_phenotype

    scenario = dict(samples=4000, loci=10000, length=50e6, seed=1, fst=(0.2, 0.4), h2=args.h2, causal=20,
                    prevalence=0.5, shift={"POP1": 0.5}, ascertain=("POP1", 0.9))
    print(f"scenario: h2 {args.h2}, ascertainment POP1 0.9, shift POP1 +0.5; trait seeds {args.trait_seeds}, "
          f"split seeds {args.split_seeds}")
    lam = {"POP1": [], "POP2": []}
    for ts in args.trait_seeds:
        f = load_scenario(**scenario, trait_seed=ts, cache_dir=args.cache_dir)
        src = BedSource(f.bfile)
        g = src.read_all()
        y = read_phenotype(f.phenotype, src.samples, None)
        pops = np.array(read_labels(f.labels, src.samples.iid, column="population"))
        for p in lam:
            sel = (pops == p) & ~np.isnan(y)
            value, top = lambda_gc(g[sel], y[sel])
            lam[p].append(value)
            print(f"  trait seed {ts}, {p}: {int(sel.sum())} people ({int(y[sel].sum())} cases), lambda_GC "
                  f"{value:.3f}, largest chi2 {top:.1f} over {g.shape[1]} SNPs")
    for p, v in lam.items():
        print(f"lambda_GC inside {p}: {summary(v)}")

    kinds = ["pcs"] + (["seq2king"] if args.seq2king else [])
    scores: dict[str, list[float]] = {}
    for ts in args.trait_seeds:
        for ss in args.split_seeds:
            for kind in kinds:
                dm = AuditDataModule(scenario={**scenario, "trait_seed": ts}, cache_dir=args.cache_dir,
                                     correction="seq2king" if kind == "seq2king" else "none", split_seed=ss)
                dm.setup()
                x = (dm.covariates if kind == "seq2king" else dm.pcs).numpy()
                y, pops = dm.y, dm.populations
                tr, te = dm.splits["train"], dm.splits["test"]
                clf = LogisticRegression(max_iter=1000).fit(x[tr], y[tr])
                for part, idx in (("train", tr), ("test", te)):
                    anc = clf.predict_proba(x[idx])[:, 1]
                    for p in ("POP1", "POP2"):
                        sel = pops[idx] == p
                        scores.setdefault(f"{kind} logistic score, {part}, {p}", []).append(
                            rank_auroc(anc[sel], y[idx][sel]))
                        for k in range(3):
                            scores.setdefault(f"{kind} component {k + 1}, {part}, {p}", []).append(
                                rank_auroc(x[idx][sel, k], y[idx][sel]))
    print("AUROC of case status inside each population (0.5: no association), over seeds:")
    for name, v in scores.items():
        print(f"  {name}: {summary(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

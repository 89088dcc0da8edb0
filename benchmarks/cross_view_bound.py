"""How far a cross-view objective could go: its linear optimum against genotype PCA, no training.

    .venv/bin/python benchmarks/cross_view_bound.py RUN_DIR [--column population] [--repeats 3]

A self-supervised cross-view target (two disjoint halves of a person's loci as two
views, the same person as the positive) keeps what both halves share, ancestry, and
cancels per-locus noise. Its linear solution is canonical correlation analysis
between the two halves: this script fits it (scikit-learn's CCA on each half's
genotype PCs, training and panel people of the run, as the analysis fits PCA) and
scores the test people's canonical scores, averaged over the two views, by the
analysis's own kNN-5 (:func:`seq2king.analysis.stats.knn_hits`), beside genotype PCA
on all loci. Canonical scores are compared as they come (whitened), weighted by
each direction's canonical correlation, and by its signal-to-noise ratio
rho / (1 - rho). Each half split is drawn ``--repeats`` times.

RUN_DIR is a trained run on a cohort with genotypes (its ``split.json`` gives the
people; the cohort comes from the run's config, from the cache).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seq2king.genetics.genotypes import GenotypeSource  # noqa: E402
from seq2king.genetics.pca import genotype_pca  # noqa: E402


class Loci(GenotypeSource):
    """Some loci of genotypes already read, as a source: what :func:`genotype_pca` reads a half from."""

    def __init__(self, g: np.ndarray, samples):
        self.g, self.samples, self.path = g, samples, Path("<loci>")

    def iter_blocks(self, block_size: int = 4096, king_only: bool = False):
        for j in range(0, self.g.shape[1], block_size):
            yield self.g[:, j:j + block_size]


def pcs(g: np.ndarray, samples, fit: np.ndarray, k: int) -> np.ndarray:
    """Everyone's top-``k`` genotype PCs of the loci in ``g``, fitted on the ``fit`` rows, as the analysis fits
    them (:func:`genotype_pca`: frequencies from the fit people, exact kernel PCA, everyone projected)."""
    return genotype_pca(Loci(g, samples), fit, np.arange(len(g)), n_components=k).scores


def main() -> int:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sklearn.cross_decomposition import CCA

    from seq2king.analysis.stats import knn_hits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--column", default="population")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pcs", default="32,50", help="PCs per half fed to CCA")
    args = ap.parse_args()
    run = Path(args.run_dir)
    split = json.loads((run / "split.json").read_text())
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cohort = instantiate(cfg.data).load_cohort()  # the run's own cohort, from the cache
    source = cohort.open_genotypes()
    if source is None or args.column not in (cohort.levels or {}):
        sys.exit(f"{run}: the run's cohort needs genotypes and a {args.column!r} label column")
    pos = {s: i for i, s in enumerate(source.samples.iid)}
    fit = np.array([pos[s] for s in split["train"] + split["panel"]])
    test = np.array([pos[s] for s in split["test"]])
    label = dict(zip(cohort.ids, cohort.levels[args.column]))
    y = np.unique([label[s] for s in split["test"]], return_inverse=True)[1]
    g = source.read_all()
    m = g.shape[1]

    def knn(x: np.ndarray) -> float:
        return float(knn_hits(x[test], y).mean())

    print(f"{run}: {len(test)} test people, {len(set(y))} groups ({args.column}), {m} loci; kNN-5:")
    top = pcs(g, source.samples, fit, 50)  # the first k of 50 PCs are the k-PC fit's
    pca = {k: knn(top[:, :k]) for k in (10, 20, 32, 50)}
    print("  genotype PCA, all loci: " + ", ".join(f"{k} PCs {v:.3f}" for k, v in pca.items()))
    rng = np.random.default_rng(0)
    best = max(pca.values())
    for ka in (int(k) for k in args.pcs.split(",")):
        for c in sorted({10, 20, ka}):
            res = {"whitened": [], "rho": [], "snr": []}
            for _ in range(args.repeats):
                perm = rng.permutation(m)
                a, b = perm[: m // 2], perm[m // 2:]
                pa, pb = pcs(g[:, a], source.samples, fit, ka), pcs(g[:, b], source.samples, fit, ka)
                cca = CCA(n_components=c, max_iter=2000).fit(pa[fit], pb[fit])
                ua, ub = cca.transform(pa, pb)
                rho = np.array([np.corrcoef(ua[fit, j], ub[fit, j])[0, 1] for j in range(c)])
                u = (ua + ub) / 2
                res["whitened"].append(knn(u))
                res["rho"].append(knn(u * rho))
                res["snr"].append(knn(u * np.sqrt(np.clip(rho, 0, None) / np.clip(1 - rho, 1e-3, None))))
            cells = ", ".join(f"{w} {np.mean(v):.3f}" for w, v in res.items())
            top = max(np.mean(v) for v in res.values())
            print(f"  CCA of the halves' {ka} PCs -> {c}: {cells}; best / best PCA = {top / best:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

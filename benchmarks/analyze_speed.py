"""Time the analysis of 1,000 people: every layer, head and scheme, 1,000 permutations, bootstrap and peers.

    .venv/bin/python benchmarks/analyze_speed.py [--people 1000] [--permutations 1000] [--bootstrap 1000]

Uses the default model shape (4 layers x 4 heads, untrained weights: timing does
not depend on training) on the embedded cohort (simulated and cached on first
use), analysing 1,000 people as sequences of 256 with 4-fold coverage, scored
exactly as ``analyze.py`` scores them (:func:`score_matrices`, float64 permutation
statistics), plus the entropy-matched softmax-KING baseline with its own
permutations, the embedding peers (KING rows, KING PCA, genotype PCA fitted on
the other people, streamed from the .bed) and the paired bootstrap comparisons.
The peer in the same run is a plain loop over permutations (one label shuffle at
a time), extrapolated from 20 shuffles. Target: the whole analysis under a
minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    import hydra as _hydra
    from hydra import compose, initialize_config_dir

    from seq2king.analysis.attention import make_sequences
    from seq2king.analysis.connectivity import masses, match_temperature, row_entropy
    from seq2king.analysis.side_by_side import MATRIX_METHODS, Context, embedding_peers, model_embedding, score_matrices
    from seq2king.analysis.stats import embedding_scores, mean_of, paired_bootstrap
    from seq2king.model.transformer import Seq2King, Seq2KingConfig

    with initialize_config_dir(config_dir=str(ROOT / "seq2king" / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data.simulation.samples={max(args.people + 300, 1000)}",
                                                      "paths.output_dir=/tmp"])
    dm = _hydra.utils.instantiate(cfg.data)
    dm.setup()
    m = {k: v for k, v in cfg.model.items() if k in Seq2KingConfig.__dataclass_fields__}
    torch.manual_seed(0)
    net = Seq2King(Seq2KingConfig(**m)).eval()
    groups = sorted(set(dm.cohort.labels))
    label_ids = np.array([groups.index(x) for x in dm.cohort.labels])
    n_all = len(dm.cohort.ids)
    people = np.arange(args.people)
    # genotype PCA is fitted on people outside the analysed set, as on training people in analyze.py
    dm.splits = {**dm.splits, "train": np.arange(args.people, n_all), "panel": np.zeros(0, dtype=int)}
    ctx = Context(net, Seq2King(Seq2KingConfig(**m)).eval(), dm, people)
    G = len(groups)
    y = label_ids[people]
    rng = np.random.default_rng(0)
    perms = np.stack([rng.permutation(len(people)) for _ in range(args.permutations)])

    t0 = time.perf_counter()
    seqs = make_sequences(people, 256, 4, 0)
    ex = MATRIX_METHODS["model"](ctx, seqs)
    t1 = time.perf_counter()
    sc = score_matrices(ex, people, y, G, perms)
    t2 = time.perf_counter()
    pick = int(np.argmax(sc.macro_lift))
    kings = [torch.from_numpy(dm.cohort.king[np.ix_(q, q)]) for q in seqs]
    temp = match_temperature(kings, float(torch.stack([row_entropy(a[pick]) for a in ex.stacks]).mean()))
    king = score_matrices(MATRIX_METHODS["softmax_king"](ctx, seqs, temp), people, y, G, perms)
    t3 = time.perf_counter()
    emb = {"model": model_embedding(ctx, ex)}
    peers = embedding_peers(ctx)
    for name, fn in peers.items():
        emb[name] = fn(ctx, ex)
    t4 = time.perf_counter()
    scores = {name: embedding_scores(x, y) for name, x in emb.items()}
    boot = dict(n=len(people), n_boot=args.bootstrap, seed=0)
    paired_bootstrap(sc.share_stat(pick), king.share_stat(0), figure="intra_share", **boot)
    for name in peers:
        paired_bootstrap(mean_of(scores["model"][1]), mean_of(scores[name][1]), figure="knn5_accuracy", **boot)
    t5 = time.perf_counter()
    n_mat = len(ex.index)

    # the peer: one shuffle at a time, a Python loop over sequences
    k = 20
    t = time.perf_counter()
    for _ in range(k):
        shuffled = label_ids.copy()
        shuffled[people] = rng.permutation(label_ids[people])
        parts = [masses(a, shuffled[seq], G) for seq, a in zip(ex.seqs, ex.stacks)]
        sum(p.intra for p in parts) / sum(p.total for p in parts)
    naive = (time.perf_counter() - t) / k * args.permutations

    print(f"{args.people} people, {len(seqs)} sequences of <= 256, {n_mat} matrices "
          f"({m['depth']} layers x ({m['heads']} heads + mean) x 3 schemes), {args.permutations} permutations, "
          f"{args.bootstrap} bootstrap resamples")
    print(f"  attention extraction                 {t1 - t0:6.1f} s")
    print(f"  model: connectivity + permutations   {t2 - t1:6.1f} s   (min p {sc.p_macro.min():.4f})")
    print(f"  softmax-KING: temperature + perms    {t3 - t2:6.1f} s")
    print(f"  embedding peers (genotype PCA incl.) {t4 - t3:6.1f} s")
    print(f"  embedding scores + bootstraps        {t5 - t4:6.1f} s")
    print(f"  total                                {t5 - t0:6.1f} s   (target < 60 s)")
    print(f"  peer: one shuffle at a time, {naive:6.1f} s for the model's permutations "
          f"-> vectorised is {naive / (t2 - t1):.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())

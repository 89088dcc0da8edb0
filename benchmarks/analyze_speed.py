"""Time the analysis of 1,000 people: every layer and head, 3 schemes, 1,000 permutations.

    .venv/bin/python benchmarks/analyze_speed.py [--people 1000] [--permutations 1000]

Uses the default model shape (4 layers x 4 heads, untrained weights: timing does
not depend on training) on the embedded cohort (simulated and cached on first
use), analysing everyone as sequences of 256 people with 4-fold coverage. Prints
the time of each stage and, as the peer in the same run, a plain loop over
permutations (one label shuffle at a time) extrapolated from 20 shuffles.
Target: the whole analysis under a minute on 2 CPU cores.
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
    args = ap.parse_args()
    from hydra import compose, initialize_config_dir
    import hydra as _hydra

    from seq2king.analysis.connectivity import masses, p_values
    from seq2king.analysis.report import extract, index_of, make_sequences, perm_test, table
    from seq2king.model.transformer import Seq2King, Seq2KingConfig

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data.simulation.samples={max(args.people, 1000)}",
                                                      "paths.output_dir=/tmp"])
    dm = _hydra.utils.instantiate(cfg.data)
    dm.setup()
    m = {k: v for k, v in cfg.model.items() if k in Seq2KingConfig.__dataclass_fields__}
    torch.manual_seed(0)
    net = Seq2King(Seq2KingConfig(**m)).eval()
    groups = sorted(set(dm.cohort.labels))
    label_ids = np.array([groups.index(x) for x in dm.cohort.labels])
    people = np.arange(args.people)
    G = len(groups)

    t0 = time.perf_counter()
    seqs = make_sequences(people, 256, 4, 0)
    ex = extract(net, dm, seqs)
    t1 = time.perf_counter()
    obs = table(ex, label_ids, G)
    t2 = time.perf_counter()
    perm = perm_test(ex, label_ids, G, args.permutations, 0, people)
    p = p_values(obs.macro_lift(), perm)
    t3 = time.perf_counter()
    n_mat = len(index_of(m["depth"], m["heads"]))

    # the peer: one shuffle at a time, a Python loop over sequences
    rng = np.random.default_rng(0)
    k = 20
    t = time.perf_counter()
    for _ in range(k):
        shuffled = label_ids.copy()
        shuffled[people] = rng.permutation(label_ids[people])
        total = None
        for seq, a in zip(ex.seqs, ex.stacks):
            mm = masses(a, torch.from_numpy(shuffled[seq]), G)
            total = mm if total is None else total + mm
        total.macro_lift()
    naive = (time.perf_counter() - t) / k * args.permutations

    print(f"{args.people} people, {len(seqs)} sequences of <= 256, {n_mat} matrices "
          f"({m['depth']} layers x ({m['heads']} heads + mean) x 3 schemes), {args.permutations} permutations")
    print(f"  attention extraction     {t1 - t0:6.1f} s")
    print(f"  connectivity             {t2 - t1:6.1f} s")
    print(f"  permutation p-values     {t3 - t2:6.1f} s   (min p {p.min():.4f})")
    print(f"  total                    {t3 - t0:6.1f} s   (target < 60 s)")
    print(f"  peer: one shuffle at a time, {naive:6.1f} s for the same permutations "
          f"-> vectorised is {naive / (t3 - t2):.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does masked-token reconstruction need the set? A token's PCs predicted from its own other columns.

    .venv/bin/python benchmarks/pc_recoverability.py [--regimes ancestry_panel,within_continent]

Masked-token reconstruction (``model.reconstruction``) hides a person's genotype PCs
and asks the network to predict them. If a person's own KING and genomic-relationship
columns (against the panel) already gave their PCs, a per-token map would do and the
attention between people would learn nothing from it. This script builds each
regime's tokens exactly as training does (the datamodule, the default split), fits a
ridge regression (scikit-learn's RidgeCV) from each block of training tokens to their
32 PCs and prints the test tokens' R2 per PC: near 1, the PC is the token's own; well
below 1, only other people of the set can supply it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", default="ancestry_panel,within_continent")
    args = ap.parse_args()
    from hydra.utils import instantiate
    from sklearn.linear_model import RidgeCV

    from seq2king.training import compose

    print("| regime | from the token's own | test R2, PCs 1-5 | PCs 6-32 (mean) | all 32 (mean) |")
    print("|---|---|---|---|---|")
    for regime in args.regimes.split(","):
        dm = instantiate(compose("train", [f"data={regime}"]).data)
        dm.setup()
        f, blocks = dm.features.numpy(), dm.feature_blocks
        if "pcs" not in blocks:
            sys.exit(f"{regime}: the tokens have no genotype PCs")
        train, test = dm.splits["train"], dm.splits["test"]
        pcs = f[:, slice(*blocks["pcs"])]
        for name in ("king", "grm", "king+grm"):
            x = np.concatenate([f[:, slice(*blocks[b])] for b in name.split("+")], 1)
            fit = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[train], pcs[train])
            resid = ((fit.predict(x[test]) - pcs[test]) ** 2).sum(0)
            r2 = 1 - resid / ((pcs[test] - pcs[test].mean(0)) ** 2).sum(0)
            print(f"| {regime} | {name} columns | {' '.join(f'{v:.3f}' for v in r2[:5])} | "
                  f"{r2[5:].mean():.3f} | {r2.mean():.3f} |")


if __name__ == "__main__":
    main()

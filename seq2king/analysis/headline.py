"""The headline: which layer, head and scheme speaks for the model, and the line that says it.

:func:`choose_headline` picks, on VALIDATION people, the matrix with the highest mean
lift over groups (near-ties broken by attention entropy); the analysis then reports
it on the analysed split, and the training callback
(:mod:`~seq2king.analysis.structure_callback`) logs the same choice each epoch.
:func:`headline_line` is the console summary of ``summary.json``.
"""

from __future__ import annotations

import numpy as np
import torch

from seq2king.analysis.attention import Extracted
from seq2king.analysis.connectivity import row_entropy
from seq2king.analysis.side_by_side import MatrixScores

LIFT_TIE = 0.005  # headline choice: lifts this close to the best (relative) count as a tie


def mean_entropies(ex: Extracted) -> np.ndarray:
    """Mean row entropy (nats, self excluded) of each matrix of a stack, over its sequences."""
    return np.array([float(torch.stack([row_entropy(a[i]) for a in ex.stacks]).mean()) for i in range(len(ex.index))])


def choose_headline(scores: MatrixScores, allowed: tuple, entropy: np.ndarray | None = None) -> int:
    """Matrix with the highest macro lift among allowed schemes.

    Near-ties (lift within ``LIFT_TIE`` of the best, relative) go to the matrix with the
    highest attention entropy: when several heads put (nearly) all attention inside the
    groups, the one that does so with the least sharpness says more, and a matrix at the
    ceiling can be matched by softmax-KING at the same entropy but never beaten.
    """
    lift = scores.macro_lift
    ok = np.array([t[0] in allowed for t in scores.index]) & np.isfinite(lift)
    best = np.max(np.where(ok, lift, -np.inf))
    if entropy is None or not np.isfinite(best):
        return int(np.argmax(np.where(ok, lift, -np.inf)))
    near = ok & (lift >= best - LIFT_TIE * abs(best))
    return int(np.argmax(np.where(near, entropy, -np.inf)))


def headline_line(summary: dict) -> str:
    """The console lines of an analysis: one per label level, the configured level first."""
    if "headline" not in summary:
        return f"no labels: {summary['n_individuals']} people analysed, no connectivity figures"
    lines = [_level_line(summary, summary["label_column"], summary)]
    for col, block in summary.get("levels", {}).items():
        if col != summary["label_column"]:
            lines.append(_level_line(summary, col, block))
    if "selection_note" in summary:
        lines.append(f"note: {summary['selection_note']}")
    return "\n".join(lines)


def _level_line(summary: dict, level: str, b: dict) -> str:
    h, base, c = b["headline"], b["baselines"], b["comparisons"]
    n_perm = summary["permutations"]

    def ptxt(p):  # the smallest p a permutation test can give is 1 / (n + 1): say "below 1/n" then
        return f"p < {1 / n_perm:.2g}" if p * (n_perm + 1) <= 1 + 1e-9 else f"p = {p:.3g}"

    def vs(name, what):
        x = c[name]
        verdict = "beats" if x["ci95"][0] > 0 else ("loses to" if x["ci95"][1] < 0 else "ties")
        return (f"{verdict} {what} by {x['difference']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]")

    head = "head mean" if h["head"] == "mean" else f"head {h['head']}"
    text = (f"[{level}] layer {h['layer']} {head} ({h['scheme']}): intra share {h['intra_share']:.3f} on "
            f"{summary['n_individuals']} {summary['split']} people, chance {b['chance']:.3f}, lift {h['lift']:.2f}, "
            f"{ptxt(h['p_value'])}; {vs('untrained', 'untrained')} ({base['untrained']['intra_share']:.3f}); "
            f"{vs('softmax_king', 'softmax-KING')} ({base['softmax_king']['intra_share']:.3f})")
    strong = b.get("strongest", {})
    a = strong.get("attention")
    if a and a != "softmax_king":
        text += f"; strongest attention baseline {a}: {vs(a, a)} ({base[a]['intra_share']:.3f})"
    text += f"; embedding kNN-5 {b['embedding']['knn5_accuracy']:.3f}"
    e = strong.get("embedding")
    if e:
        text += (f"; strongest embedding peer {e}: {vs(e, e)} "
                 f"({b['embedding_baselines'][e]['knn5_accuracy']:.3f})")
    return text

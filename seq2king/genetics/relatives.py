"""plink2's ``--king-cutoff``: a maximal set of people with no pair above a kinship cutoff.

Only the pairs above the cutoff are kept from the KING bands (a sparse graph: at biobank size the
matrix itself is never held), then plink2's greedy runs on that graph, in plink2's order:

- while any pair is left, if some person has exactly one partner left, the first such person (in
  file order) keeps their place and their partner is removed;
- otherwise the first person with the most partners is removed.

The result equals plink2's ``.king.cutoff.in.id`` / ``.king.cutoff.out.id`` (tests against live plink2).
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from seq2king.fileio import atomic_files
from seq2king.genetics.genotypes import SampleIds
from seq2king.genetics.king import KingBand


def related_pairs(bands: Iterable[KingBand], cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` with ``i > j`` for every pair whose kinship is above ``cutoff`` (plink2: strictly above)."""
    rows, cols = [], []
    for band in bands:
        k = band.kinship[:, : band.r1]
        i = np.arange(band.r0, band.r1)[:, None]
        hit = (k > cutoff) & (np.arange(band.r1)[None, :] < i)
        r, c = np.nonzero(hit)
        rows.append(r + band.r0)
        cols.append(c)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def prune_related(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """plink2's greedy on the pairs ``(i, j)``: a bool array, True for each person removed."""
    partners: dict[int, set[int]] = {}
    for a, b in zip(i.tolist(), j.tolist()):
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    degree = np.zeros(n, dtype=np.int64)
    for v, ps in partners.items():
        degree[v] = len(ps)
    removed = np.zeros(n, dtype=bool)
    live = np.array(sorted(partners), dtype=np.int64)  # people with a partner left, in file order
    while len(live):
        d = degree[live]
        ones = live[d == 1]
        if len(ones):
            prune = min(partners[int(ones[0])])  # the one partner of the first person with one
        else:
            prune = int(live[np.argmax(d)])  # argmax: the first of the largest
        for u in partners.pop(prune):
            partners[u].discard(prune)
            degree[u] -= 1
        degree[prune] = 0
        removed[prune] = True
        live = live[degree[live] > 0]
    return removed


def write_cutoff_ids(out: str | os.PathLike, ids: SampleIds, removed: np.ndarray) -> list[str]:
    """``OUT.king.cutoff.in.id`` and ``OUT.king.cutoff.out.id`` as plink2 writes them, atomically."""
    cols = ids.columns()
    head = "#" + "\t".join(name for name, _ in cols) + "\n"
    rows = ["\t".join(r) + "\n" for r in zip(*(vals for _, vals in cols))]
    paths = [f"{out}.king.cutoff.in.id", f"{out}.king.cutoff.out.id"]
    with atomic_files(*paths) as (kept, dropped):
        with open(kept, "w") as fh:
            fh.write(head + "".join(r for r, x in zip(rows, removed) if not x))
        with open(dropped, "w") as fh:
            fh.write(head + "".join(r for r, x in zip(rows, removed) if x))
    return paths

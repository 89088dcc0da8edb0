"""Structure while training: the analysis' own figures on validation people at each validation epoch.

``val/intra_share``, ``val/lift`` and ``val/top1`` are the macro intra share, lift and top-1 share of the
no-inversion matrix the analysis would choose as its headline on these people (highest lift, near-ties to
the broader attention), and ``val/knn5`` the leave-one-out 5-nearest-neighbour accuracy of the model's
embedding, at the labels' first level; all through the same code as ``analyze.py``
(:func:`~seq2king.analysis.attention.extract`, :func:`~seq2king.analysis.side_by_side.score_matrices`,
:func:`~seq2king.analysis.stats.knn_hits`), on sequences of the analysis' length (everyone in one
sequence when they fit). A sweep can then optimise what users sweep for
(``hparams_search=optuna_structure`` maximises ``val/lift``). Off without labels.
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl

from seq2king.analysis.attention import extract, longest_sequence, make_sequences
from seq2king.analysis.headline import choose_headline, mean_entropies
from seq2king.analysis.side_by_side import score_matrices
from seq2king.analysis.stats import knn_accuracy, knn_hits

log = logging.getLogger(__name__)


class StructureMetrics(pl.Callback):
    """Logs ``val/intra_share``, ``val/lift``, ``val/top1`` and ``val/knn5`` after each validation epoch.

    ``max_people``: at most this many validation people (a seeded sample, the same every epoch);
    ``max_sequence``: people per sequence (the analysis' default, 256).
    """

    def __init__(self, max_people: int = 1024, max_sequence: int = 256, seed: int = 0):
        self.max_people, self.max_sequence, self.seed = int(max_people), int(max_sequence), int(seed)
        self._people = self._labels = None
        self._off = False

    def _setup(self, dm) -> bool:
        if self._off or self._people is not None:
            return not self._off
        cohort = getattr(dm, "cohort", None)
        labels = getattr(cohort, "labels", None) if cohort is not None else None
        splits = getattr(dm, "splits", None) or {}
        if labels is None or "val" not in splits or getattr(dm, "collate", None) is None:
            self._off = True
            log.info("structure metrics off: the cohort has no labels")
            return False
        people = np.sort(np.asarray(splits["val"]))
        if len(people) > self.max_people:
            people = np.sort(np.random.default_rng(self.seed).choice(people, self.max_people, replace=False))
        names = np.asarray(labels, dtype=object)[people]
        groups = sorted(set(names.tolist()))
        if len(groups) < 2 or len(people) < 6:
            self._off = True
            log.info("structure metrics off: %d validation people in %d groups", len(people), len(groups))
            return False
        self._people = people
        self._labels = np.array([groups.index(x) for x in names], dtype=np.int64)
        self._n_groups = len(groups)
        return True

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._setup(trainer.datamodule):
            return
        net = pl_module.net
        was_training = net.training
        net.eval()
        try:
            seqs = make_sequences(self._people, longest_sequence(net, self.max_sequence), 1, self.seed)
            ex = extract(net, trainer.datamodule, seqs, schemes=("none",), device=pl_module.device)
        finally:
            net.train(was_training)
        sc = score_matrices(ex, self._people, self._labels, self._n_groups)
        best = choose_headline(sc, ("none",), mean_entropies(ex))  # the analysis' own headline choice
        emb = np.stack([ex.embeddings[int(p)] for p in self._people])
        knn = knn_accuracy(knn_hits(emb, self._labels))
        pl_module.log_dict({"val/intra_share": float(sc.macro_share[best]), "val/lift": float(sc.macro_lift[best]),
                            "val/top1": float(sc.top1[best]), "val/knn5": knn}, prog_bar=False)

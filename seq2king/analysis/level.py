"""One label level (a categorical column of the labels file) scored: every method, side by side.

:func:`score_level` takes what every level shares (:class:`Shared`: the sequences, the
model's and the untrained network's attention on the analysed and the validation
people, the similarity matrices of the parameter-free baselines, every embedding) and
one column of labels, and returns a :class:`Level`: the headline chosen on validation
people, every attention baseline at the headline's entropy, every embedding peer, and
the paired comparisons of the model with each. :meth:`Level.summary` is its block of
``summary.json``; the pictures (:mod:`~seq2king.analysis.writers`) read the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from seq2king.analysis.attention import Extracted
from seq2king.analysis.connectivity import SCHEMES, match_temperature, row_entropy
from seq2king.analysis.headline import LIFT_TIE, choose_headline
from seq2king.analysis.side_by_side import (ATTENTION_BASELINE_NOTES, Context, MatrixScores, score_matrices,
                                            softmax_attention)
from seq2king.analysis.stats import bh, embedding_scores, mean_of, paired_bootstrap


@dataclass
class Shared:
    """What every label level is scored from."""

    seqs: list  # sequences of the analysed people
    val_people: np.ndarray
    val_seqs: list
    model: Extracted  # the analysed people's attention, every layer x head x scheme
    untrained: Extracted
    model_val: Extracted  # the same on validation people, where the headline is chosen
    untrained_val: Extracted
    model_val_entropy: np.ndarray  # each matrix's mean row entropy on validation people (the tie-break)
    untrained_val_entropy: np.ndarray
    similarities: dict  # baseline name -> per-sequence similarity matrices
    embeddings: dict  # method name -> (analysed people, d)


@dataclass
class Level:
    """A label level scored; :meth:`summary` is its ``summary.json`` block."""

    name: str
    groups: list[str]
    labels: np.ndarray  # (cohort,) group id of everyone
    y: np.ndarray  # (analysed,) group ids of the analysed people
    model: MatrixScores
    untrained: MatrixScores
    pick: int  # the headline matrix (chosen on validation people)
    pick_none: int  # the best matrix without inversion
    un_pick: int  # the untrained network's own headline (chosen the same way)
    soft: dict  # baseline name -> MatrixScores, at the headline's entropy
    temperatures: dict
    target_entropy: float
    embedding: dict  # method -> {knn5_accuracy, ari}; "model" among them
    comparisons: dict  # peer -> Comparison (model minus peer, paired bootstrap)
    seqs: list
    stacks: list  # the model's attention on the analysed people, per sequence
    model_embedding: np.ndarray
    val_count: int
    split: str
    allowed: tuple
    extra: dict = field(default_factory=dict)  # parent groups, IDs and label table for the pictures

    @property
    def knn(self) -> dict:
        return {k: v["knn5_accuracy"] for k, v in self.embedding.items()}

    def summary(self) -> dict:
        y, groups, model = self.y, self.groups, self.model
        p_bh = bh(model.p_group[self.pick])
        scheme, layer, head = model.index[self.pick]
        headline = {"layer": layer, "head": head, "scheme": scheme, **model.row(self.pick), "chosen_on": "val",
                    "why": f"highest mean lift over groups on {self.val_count} validation people among schemes "
                           f"{list(self.allowed)} (lifts within {LIFT_TIE:.1%} of the best count as a tie, broken by "
                           f"the highest attention entropy), then measured on {self.split} people",
                    "per_group": {g: {"n": int((y == i).sum()), "intra_share": float(model.shares[self.pick, i]),
                                      "chance": float(model.chance[i]), "lift": float(model.lifts[self.pick, i]),
                                      "p_value": float(model.p_group[self.pick, i]), "p_bh": float(p_bh[i])}
                                  for i, g in enumerate(groups) if (y == i).any()}}
        if self.split == "val":
            headline["selection_note"] = "chosen and measured on the same validation people: p not selection-adjusted"
        sn, ln, hn = model.index[self.pick_none]
        us, ul, uh = self.untrained.index[self.un_pick]
        peers = {k: v for k, v in self.embedding.items() if k != "model"}
        baselines = {
            "chance": {"intra_share": model.macro_chance, "lift": 1.0},
            "untrained": {**self.untrained.row(self.un_pick), "layer": ul, "head": uh, "scheme": us,
                          "chosen_on": "val"},
            **{name: {**sc.row(0), "temperature": self.temperatures[name],
                      "matched_entropy_nats": self.target_entropy, "what": ATTENTION_BASELINE_NOTES[name]}
               for name, sc in self.soft.items()},
        }
        return {
            "groups": {g: int((y == i).sum()) for i, g in enumerate(groups)},
            "chance": model.macro_chance,
            "headline": headline,
            "headline_no_inversion": {"layer": ln, "head": hn, "scheme": "none", **model.row(self.pick_none)},
            "baselines": baselines,
            "embedding": self.embedding["model"],
            "embedding_baselines": peers,
            "comparisons": {k: v.as_dict() for k, v in self.comparisons.items()},
            "strongest": {  # the untrained twin counts: beating it is what says training added something
                "attention": max(["untrained", *self.soft], key=lambda n: baselines[n]["intra_share"]),
                "embedding": max(peers, key=lambda n: peers[n]["knn5_accuracy"]) if peers else None,
            },
        }


def score_level(ctx: Context, name: str, labels_of: list, shared: Shared, s, seed_offset: int) -> Level:
    """Score label column ``name`` (``labels_of``: everyone's label, cohort order) with settings ``s``."""
    groups = sorted(set(labels_of))
    gid = {g: i for i, g in enumerate(groups)}
    labels = np.array([gid[x] for x in labels_of])
    people, G = ctx.people, len(groups)
    y, y_val = labels[people], labels[shared.val_people]
    allowed = SCHEMES if s.inversion == "all" else (s.inversion,)
    rng = np.random.default_rng(s.seed + 1000 * seed_offset)
    perms = np.stack([rng.permutation(len(people)) for _ in range(s.permutations)]) if s.permutations else None

    # the headline (and the untrained network's own) chosen on validation people, then scored here
    val_model = score_matrices(shared.model_val, shared.val_people, y_val, G)
    pick = choose_headline(val_model, allowed, shared.model_val_entropy)
    pick_none = choose_headline(val_model, ("none",), shared.model_val_entropy)
    un_pick = choose_headline(score_matrices(shared.untrained_val, shared.val_people, y_val, G), allowed,
                              shared.untrained_val_entropy)
    model = score_matrices(shared.model, people, y, G, perms)
    untrained = score_matrices(shared.untrained, people, y, G)

    # every parameter-free baseline at the headline's attention entropy
    target = float(torch.stack([row_entropy(a[pick]) for a in shared.model.stacks]).mean())
    soft, temps = {}, {}
    for base, sims in shared.similarities.items():
        temps[base] = match_temperature(sims, target)
        soft[base] = score_matrices(softmax_attention(sims, shared.seqs, temps[base]), people, y, G,
                                    perms if base == "softmax_king" else None)

    # embeddings, and the model against every peer on the same people
    embedding, hits = {}, {}
    for method, x in shared.embeddings.items():
        embedding[method], hits[method] = embedding_scores(x, y, s.seed)
    boot = dict(n=len(people), n_boot=s.bootstrap, seed=s.seed + 7 + 1000 * seed_offset)
    comparisons = {"untrained": paired_bootstrap(model.share_stat(pick), untrained.share_stat(un_pick),
                                                 figure="intra_share", **boot)}
    for base, sc in soft.items():
        comparisons[base] = paired_bootstrap(model.share_stat(pick), sc.share_stat(0), figure="intra_share", **boot)
    for method in embedding:
        if method != "model":
            comparisons[method] = paired_bootstrap(mean_of(hits["model"]), mean_of(hits[method]),
                                                   figure="knn5_accuracy", **boot)
    return Level(name=name, groups=groups, labels=labels, y=y, model=model, untrained=untrained, pick=pick,
                 pick_none=pick_none, un_pick=un_pick, soft=soft, temperatures=temps, target_entropy=target,
                 embedding=embedding, comparisons=comparisons, seqs=shared.seqs, stacks=shared.model.stacks,
                 model_embedding=shared.embeddings["model"], val_count=len(shared.val_people), split=s.split,
                 allowed=allowed)


def method_rows(level: str, b: dict) -> list[dict]:
    """The ``methods`` table of ``summary.json``: one row per method and figure, at one label level."""
    rows = []

    def add(method, kind, figures, where=""):
        for fig in ("intra_share", "lift", "top1_share", "p_value", "knn5_accuracy", "ari"):
            if fig in figures:
                rows.append({"level": level, "method": method, "kind": kind, "figure": fig,
                             "value": figures[fig], "where": where})

    h = b["headline"]
    add("model", "attention", h, f"layer {h['layer']} head {h['head']} {h['scheme']} (chosen on val)")
    hn = b["headline_no_inversion"]
    add("model (no inversion)", "attention", hn, f"layer {hn['layer']} head {hn['head']} none (chosen on val)")
    u = b["baselines"]["untrained"]
    add("untrained", "attention", u, f"layer {u['layer']} head {u['head']} {u['scheme']} (chosen on val)")
    for name, k in b["baselines"].items():
        if name.startswith("softmax_"):
            add(name, "attention", k, f"T={k['temperature']:.4g}, entropy matched to the model")
    add("chance", "attention", b["baselines"]["chance"])
    add("model", "embedding", b["embedding"])
    for name, e in b["embedding_baselines"].items():
        add(name, "embedding", e)
    return rows

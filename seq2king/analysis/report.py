"""Analyse a trained run: does attention recover population structure on unseen people?

``analyze(run_dir, ...)`` loads the run (:mod:`runs`, split checked against the
checkpoint), extracts attention for every layer and head over sequences of the
analysed people (:mod:`attention`), scores every method side by side
(:mod:`side_by_side`) at every label level of the labels file, compares the model
with each peer on the same people (:mod:`stats`), and writes
``run_dir/analysis/``: ``summary.json`` and ``connectivity.csv`` first, then the
extras (plots, offline BERTViz, W&B; :mod:`writers`), so that a failing extra
never costs the figures.

The headline (layer, head, inversion scheme) is chosen on VALIDATION people and
reported on the analysed split (test by default), per label level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from seq2king.analysis import writers
from seq2king.analysis.attention import longest_sequence, make_sequences
from seq2king.analysis.connectivity import SCHEMES
from seq2king.analysis.headline import mean_entropies
from seq2king.analysis.level import Shared, method_rows, score_level
from seq2king.analysis.runs import load_run
from seq2king.analysis.side_by_side import (EMBEDDING_METHODS, MATRIX_METHODS, SIMILARITIES, Context, embedding_peers,
                                            similarities)
from seq2king.errors import InputError
from seq2king.model.transformer import Seq2King

log = logging.getLogger(__name__)

DEFINITIONS = {
    "intra_share": "mean over groups of each group's attention mass to its own other members / its mass to all "
                   "other people (self excluded), masses summed over sequences",
    "chance": "mean over groups of the same share under uniform attention over the other people of a sequence",
    "lift": "mean over groups of each group's intra share / its chance (not intra_share / chance, a ratio of means)",
    "top1_share": "share of people whose most-attended other person is in their own group",
    "p_value": "one-sided permutation p of the lift: labels shuffled across the analysed people; ties (relative "
               "1e-9) count as reaching the observed value",
    "p_bh": "Benjamini-Hochberg adjusted p over the p-values of the same table",
    "knn5_accuracy": "leave-one-out 5-nearest-neighbour accuracy, Euclidean in each method's own space (no per-feature scaling)",
    "ari": "adjusted Rand index of k-means (k = number of groups) against the labels",
    "comparisons": "model minus peer on the same people; ci95: 2.5-97.5% percentiles over bootstrap resamples of "
                   "the analysed people (both figures recomputed on each resample, per-person values held fixed); "
                   "p_value: one-sided, (1 + #{resampled difference <= 0}) / (1 + resamples)",
}


@dataclass
class AnalysisSettings:
    split: str = "test"
    max_sequence: int = 256  # people per sequence; everyone in one when they fit
    coverage: int = 4  # with several sequences: how many each person appears in
    permutations: int = 1000
    bootstrap: int = 1000  # resamples of people for the paired comparisons
    inversion: str = "all"  # all | none | complement | negate: schemes the headline may use
    levels: tuple | None = None  # label columns to analyse; None: every categorical column
    bertviz_people: int = 24
    n_clusters: int = 4  # k-means k when there are no labels
    umap: bool = True  # embeddings_umap*.png: UMAP of the embedding beside UMAP of genotype PCs (umap-learn)
    max_people: int | None = 1000  # a larger split is analysed on a seeded sample of this many (None: all)
    seed: int = 0
    device: str = "cpu"


def analyze(run_dir: str | None = None, ckpt_path: str | None = None, settings: AnalysisSettings | None = None,
            wandb_log: bool = True) -> dict:
    """Analyse a run into ``run_dir/analysis/``; returns the summary (what ``summary.json`` holds)."""
    s = _checked(settings or AnalysisSettings())
    torch.manual_seed(s.seed)
    run = load_run(run_dir, ckpt_path, s.device)
    dm, net = run.datamodule, run.module.net
    # A sweep over analysis.inversion keeps one directory per setting.
    out = run.run_dir / ("analysis" if s.inversion == "all" else f"analysis_{s.inversion}")
    out.mkdir(parents=True, exist_ok=True)
    cohort = dm.cohort
    people = _capped(np.sort(dm.splits[s.split]), s, s.split)
    max_seq = longest_sequence(net, s.max_sequence)
    torch.manual_seed(s.seed)
    ctx = Context(net, Seq2King(net.cfg).eval().to(s.device), dm, people, s.device)
    summary = _header(s, run, out, len(people))
    if len(people) < len(dm.splits[s.split]):
        summary["sample_note"] = (f"a seeded sample of {len(people)} of the {len(dm.splits[s.split])} {s.split} "
                                  f"people (analysis.max_people={s.max_people})")
    seqs = make_sequences(people, max_seq, s.coverage, s.seed)
    model_ex = MATRIX_METHODS["model"](ctx, seqs)
    wanted = _levels_to_analyse(cohort.levels, s.levels, people)
    if not wanted:
        summary.update(writers.unlabelled(out, ctx, model_ex, s))
        writers.write_json(out / "summary.json", summary)
        return _extras(summary, out, lambda: writers.unlabelled_pictures(out, ctx, model_ex, s), run, wandb_log)

    shared = _shared(ctx, s, people, seqs, model_ex, max_seq)
    if missing := [n for n in SIMILARITIES if n not in shared.similarities]:
        summary["baselines_note"] = (
            f"{', '.join(missing)} not computed: the run's inputs have no "
            + ("genotypes (a KING matrix alone), so only the baselines KING allows are shown"
               if "softmax_grm" in missing else "genotype PCs in the token (data.genotype_pcs=0)"))
    pictures = {"parent": None, "ids": [str(cohort.ids[p]) for p in people],  # the same for every level
                "label_table": {c: [str(v[p]) for p in people] for c, v in cohort.levels.items()}}
    levels = {}
    for i, col in enumerate(wanted):
        log.info("label level %s: %d groups", col, len(set(cohort.levels[col])))
        levels[col] = score_level(ctx, col, cohort.levels[col], shared, s, seed_offset=i)
        levels[col].extra = {**pictures, "parent": parent_level(cohort.levels, col)}
    primary = wanted[0]
    blocks = {col: lv.summary() for col, lv in levels.items()}
    summary["label_column"] = primary
    summary.update(blocks[primary])
    summary["levels"] = blocks
    summary["methods"] = [row for col in wanted for row in method_rows(col, blocks[col])]
    summary["paper_table"] = writers.paper_table(levels[primary].model, levels[primary].groups)
    writers.write_connectivity(out / "connectivity.csv", levels)
    writers.write_json(out / "summary.json", summary)

    def pictures_jobs():
        jobs = {"plots": lambda: writers.plots(out, levels, primary)}
        if s.umap:
            jobs["umap"] = lambda: writers.umap_plots(out, levels, primary, _umap_inputs(shared.embeddings), s.seed)
        return {**jobs, "bertviz": lambda: writers.bertviz(out, net, dm, people, levels[primary], s)}
    return _extras(summary, out, pictures_jobs, run, wandb_log)


def _checked(s: AnalysisSettings) -> AnalysisSettings:
    if s.inversion not in ("all", *SCHEMES):
        raise InputError(f"analysis.inversion={s.inversion!r}: choose all, none, complement or negate")
    if s.split not in ("train", "val", "test"):
        raise InputError(f"split={s.split!r}: choose train, val or test")
    if s.permutations < 1:
        raise InputError(f"analysis.permutations={s.permutations}: need at least 1 (every p-value is a permutation test)")
    if s.max_people is not None and s.max_people < 6:
        raise InputError(f"analysis.max_people={s.max_people}: need at least 6 (or null for everyone)")
    return s


def _shared(ctx: Context, s: AnalysisSettings, people: np.ndarray, seqs: list, model_ex, max_seq: int) -> Shared:
    """Everything the label levels share: attention of the model and the untrained network on the analysed
    and the validation people (where headlines are chosen), the baselines' similarities, every embedding."""
    dm = ctx.datamodule
    on_val = s.split == "val"
    val_people = people if on_val else _capped(np.sort(dm.splits["val"]), s, "val")
    val_seqs = seqs if on_val else make_sequences(val_people, max_seq, s.coverage, s.seed + 1)
    untrained_ex = MATRIX_METHODS["untrained"](ctx, seqs)
    model_val = model_ex if on_val else MATRIX_METHODS["model"](ctx, val_seqs)
    untrained_val = untrained_ex if on_val else MATRIX_METHODS["untrained"](ctx, val_seqs)
    # the untrained twin's embedding is a peer too: what training adds is the model's margin over it
    embeddings = {"model": EMBEDDING_METHODS["model"](ctx, model_ex),
                  "untrained_embedding": EMBEDDING_METHODS["model"](ctx, untrained_ex)}
    for name, fn in embedding_peers(ctx).items():
        x = fn(ctx, model_ex)
        if x is not None:
            embeddings[name] = x
    sims = {name: sim for name in SIMILARITIES if (sim := similarities(ctx, name, seqs)) is not None}
    return Shared(seqs=seqs, val_people=val_people, val_seqs=val_seqs, model=model_ex, untrained=untrained_ex,
                  model_val=model_val, untrained_val=untrained_val, model_val_entropy=mean_entropies(model_val),
                  untrained_val_entropy=mean_entropies(untrained_val), similarities=sims, embeddings=embeddings)


def _umap_inputs(embeddings: dict) -> dict:
    """The model's embedding beside the most genotype PCs the analysis fitted (the model's K, else 20)."""
    out = {"the model's embedding": embeddings["model"]}
    pcs = [n for n in embeddings if n.startswith("genotype_pca") and not n.endswith("_white")]
    if pcs:
        best = max(pcs, key=lambda n: int(n[len("genotype_pca"):]))
        out[f"{best[len('genotype_pca'):]} genotype PCs"] = embeddings[best]
    return out


def _capped(people: np.ndarray, s: AnalysisSettings, name: str) -> np.ndarray:
    """``people``, or a seeded sample of ``analysis.max_people`` of them (every figure is per person or
    per sequence, so a sample keeps the analysis linear in the cohort; said in the log)."""
    if s.max_people is None or len(people) <= s.max_people:
        return people
    log.info("analysis.max_people=%d: analysing a seeded sample of the %d %s people", s.max_people, len(people), name)
    return np.sort(np.random.default_rng([s.seed, 5]).choice(people, s.max_people, replace=False))


def _header(s: AnalysisSettings, run, out, n: int) -> dict:
    net = run.module.net
    transductive = net.cfg.tokenizer == "index"
    summary = {
        "split": s.split, "n_individuals": int(n), "run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint),
        "analysis_dir": str(out), "inversion_allowed": s.inversion, "permutations": s.permutations,
        "bootstrap": s.bootstrap, "tokenizer": net.cfg.tokenizer, "head": net.cfg.head,
        "head_note": ("attention head: the last layer's attention logits are, by construction, the model's "
                      "predicted kinship; earlier layers are free" if net.cfg.head == "attention" else
                      "the prediction head reads embeddings; attention is not tied to kinship by construction"),
        "note": ("index tokenizer: people outside the training split have untrained embeddings, so only a "
                 "transductive analysis (split=train) is meaningful for this model" if transductive else
                 "kinship tokenizer: analysed people are embedded from their KING to the training panel only"),
        "definitions": DEFINITIONS,
    }
    if s.split == "val":
        summary["selection_note"] = ("split=val: the headline was chosen and measured on the same validation "
                                     "people, so its p-value is not selection-adjusted")
    return summary


def _extras(summary: dict, out, make, run, wandb_log: bool) -> dict:
    """Run the optional outputs one by one; a failure is logged and recorded, the figures stay."""
    jobs = dict(make())
    if wandb_log:
        jobs["wandb"] = lambda: writers.log_wandb(run.run_dir, out, summary)
    status = {}
    for name, job in jobs.items():
        try:
            job()
            status[name] = "ok"
        except Exception as e:  # the figures are already on disk
            log.exception("analysis extra %r failed", name)
            status[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    summary["extras"] = status
    writers.write_json(out / "summary.json", summary)
    return summary


def _levels_to_analyse(cohort_levels: dict | None, asked: tuple | None, people: np.ndarray) -> list[str]:
    """The label columns to analyse (``analysis.levels``, else all): a column with one group among the
    analysed people has nothing to tell apart (lift 1, p = 1 by construction) and is skipped, said once."""
    if cohort_levels is None:
        return []
    names = list(cohort_levels)
    wanted = list(asked) if asked else names
    unknown = [c for c in wanted if c not in cohort_levels]
    if unknown:
        raise InputError(f"analysis.levels={wanted}: no categorical label column {unknown[0]!r} "
                         f"(the labels file has {', '.join(names)})")
    kept = []
    for col in wanted:
        groups = sorted(set(np.asarray(cohort_levels[col])[people]))
        if len(groups) < 2:
            log.warning("label level %s: every one of the %d analysed people is in %r, so there is no structure "
                        "to find; level skipped", col, len(people), groups[0] if groups else "")
            continue
        kept.append(col)
    return kept


def parent_level(levels: dict[str, list], col: str) -> dict | None:
    """``{group: parent group}`` from the label column with fewer groups in which each group of ``col`` lies
    whole (population -> superpopulation), or None: what the pictures group and colour by."""
    best = None
    for other, values in levels.items():
        if other == col:
            continue
        pairs = {}
        for g, p in zip(levels[col], values):
            if pairs.setdefault(g, p) != p:
                break
        else:
            n = len(set(pairs.values()))
            if 1 < n < len(pairs) and (best is None or n > len(set(best.values()))):
                best = pairs
    return {str(k): str(v) for k, v in best.items()} if best else None



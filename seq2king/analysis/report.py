"""Analyse a trained run: does attention recover population structure on unseen people?

``analyze(run_dir, ...)`` loads the run (:mod:`runs`, split checked against the
checkpoint), extracts attention for every layer and head over sequences of the
analysed people (:mod:`attention`), scores every method side by side
(:mod:`methods`) at every label level of the labels file, compares the model
with each peer on the same people (:mod:`stats`), and writes
``run_dir/analysis/``: ``summary.json`` and ``connectivity.csv`` first, then the
extras (plots, offline BERTViz, W&B; :mod:`outputs`), so that a failing extra
never costs the figures.

The headline (layer, head, inversion scheme) is chosen on VALIDATION people and
reported on the analysed split (test by default), per label level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from seq2king.analysis import outputs
from seq2king.analysis.attention import longest_sequence, make_sequences
from seq2king.analysis.connectivity import SCHEMES, match_temperature, row_entropy
from seq2king.analysis.methods import (ATTENTION_BASELINE_NOTES, EMBEDDING_METHODS, MATRIX_METHODS, SIMILARITIES,
                                       Context, MatrixScores, embedding_peers, score_matrices, similarities,
                                       softmax_attention)
from seq2king.analysis.runs import load_run
from seq2king.analysis.stats import bh, embedding_scores, mean_of, paired_bootstrap
from seq2king.errors import InputError

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


LIFT_TIE = 0.005  # headline choice: lifts this close to the best (relative) count as a tie


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
    s = settings or AnalysisSettings()
    if s.inversion not in ("all", *SCHEMES):
        raise InputError(f"analysis.inversion={s.inversion!r}: choose all, none, complement or negate")
    if s.split not in ("train", "val", "test"):
        raise InputError(f"split={s.split!r}: choose train, val or test")
    if s.permutations < 1:
        raise InputError(f"analysis.permutations={s.permutations}: need at least 1 (every p-value is a permutation test)")
    torch.manual_seed(s.seed)
    run = load_run(run_dir, ckpt_path, s.device)
    dm, net = run.datamodule, run.module.net
    # A sweep over analysis.inversion keeps one directory per setting.
    out = run.run_dir / ("analysis" if s.inversion == "all" else f"analysis_{s.inversion}")
    out.mkdir(parents=True, exist_ok=True)
    cohort = dm.cohort
    if s.max_people is not None and s.max_people < 6:
        raise InputError(f"analysis.max_people={s.max_people}: need at least 6 (or null for everyone)")
    people = _capped(np.sort(dm.splits[s.split]), s, s.split)
    max_seq = longest_sequence(net, s.max_sequence)
    torch.manual_seed(s.seed)
    from seq2king.model.transformer import Seq2King

    ctx = Context(net, Seq2King(net.cfg).eval().to(s.device), dm, people, s.device)
    summary = _header(s, run, out, len(people))
    if len(people) < len(dm.splits[s.split]):
        summary["sample_note"] = (f"a seeded sample of {len(people)} of the {len(dm.splits[s.split])} {s.split} "
                                  f"people (analysis.max_people={s.max_people})")
    seqs = make_sequences(people, max_seq, s.coverage, s.seed)
    model_ex = MATRIX_METHODS["model"](ctx, seqs)
    wanted = _levels_to_analyse(cohort.levels, s.levels, people)
    if not wanted:
        summary.update(outputs.unlabelled(out, ctx, model_ex, s))
        outputs.write_json(out / "summary.json", summary)
        return _extras(summary, out, lambda: outputs.unlabelled_extras(out, ctx, model_ex, s), run, wandb_log)

    val_people = people if s.split == "val" else _capped(np.sort(dm.splits["val"]), s, "val")
    val_seqs = seqs if s.split == "val" else make_sequences(val_people, max_seq, s.coverage, s.seed + 1)
    untrained_ex = MATRIX_METHODS["untrained"](ctx, seqs)
    shared = {"model": model_ex, "untrained": untrained_ex,  # the analysed people, and validation people to choose on
              "model_val": model_ex if s.split == "val" else MATRIX_METHODS["model"](ctx, val_seqs),
              "untrained_val": untrained_ex if s.split == "val" else MATRIX_METHODS["untrained"](ctx, val_seqs)}
    for name in ("model", "untrained"):  # the headline's tie-break: each matrix's entropy on validation people
        shared[f"{name}_val_entropy"] = _entropies(shared[f"{name}_val"])
    embeddings = {"model": EMBEDDING_METHODS["model"](ctx, model_ex)}
    for name, fn in embedding_peers(ctx).items():
        x = fn(ctx, model_ex)
        if x is not None:
            embeddings[name] = x
    # the parameter-free attention baselines this run's inputs allow (similarities per sequence)
    shared["similarities"] = {}
    for name in SIMILARITIES:
        sims = similarities(ctx, name, seqs)
        if sims is not None:
            shared["similarities"][name] = sims
    missing = [n for n in SIMILARITIES if n not in shared["similarities"]]
    if missing:
        summary["baselines_note"] = (
            f"{', '.join(missing)} not computed: the run's inputs have no "
            + ("genotypes (a KING matrix alone), so only the baselines KING allows are shown"
               if "softmax_grm" in missing else "genotype PCs in the token (data.genotype_pcs=0)"))
    levels, details = {}, {}
    ids = [str(cohort.ids[p]) for p in ctx.people]  # for the interactive page: the same for every level
    label_table = {c: [str(v[p]) for p in ctx.people] for c, v in cohort.levels.items()}
    for i, col in enumerate(wanted):
        lab = np.asarray(cohort.levels[col])
        log.info("label level %s: %d groups", col, len(set(lab)))
        levels[col], details[col] = _level(ctx, lab, seqs, val_people, val_seqs, shared, embeddings, s, seed_offset=i)
        details[col].update(parent=parent_level(cohort.levels, col), ids=ids, label_table=label_table)
    pcs = [n for n in embeddings if n.startswith("genotype_pca") and not n.endswith("_white")]
    umap_inputs = {"the model's embedding": embeddings["model"]}
    if pcs:  # the most PCs the analysis fitted (the model's K, else 20)
        best = max(pcs, key=lambda n: int(n[len("genotype_pca"):]))
        umap_inputs[f"{best[len('genotype_pca'):]} genotype PCs"] = embeddings[best]
    primary = wanted[0]
    summary["label_column"] = primary
    summary.update({k: v for k, v in levels[primary].items()})
    summary["levels"] = levels
    summary["methods"] = [row for col in wanted for row in _method_rows(col, levels[col])]
    summary["paper_table"] = outputs.paper_table(details[primary]["model"], details[primary]["groups"])
    outputs.write_connectivity(out / "connectivity.csv", details)
    outputs.write_json(out / "summary.json", summary)

    def extras():
        jobs = {"plots": lambda: outputs.plots(out, details, primary)}
        if s.umap:
            jobs["umap"] = lambda: outputs.umap_plots(out, details, primary, umap_inputs, s.seed)
        return {**jobs,
                "bertviz": lambda: outputs.bertviz(out, net, dm, people, details[primary], s)}
    return _extras(summary, out, extras, run, wandb_log)


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
        jobs["wandb"] = lambda: outputs.log_wandb(run.run_dir, out, summary)
    status = {}
    for name, job in jobs.items():
        try:
            job()
            status[name] = "ok"
        except Exception as e:  # the figures are already on disk
            log.exception("analysis extra %r failed", name)
            status[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    summary["extras"] = status
    outputs.write_json(out / "summary.json", summary)
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


def _entropies(ex) -> np.ndarray:
    """Mean row entropy (nats, self excluded) of each matrix of a stack, over its sequences."""
    return np.array([float(torch.stack([row_entropy(a[i]) for a in ex.stacks]).mean()) for i in range(len(ex.index))])


def _choose(scores: MatrixScores, allowed: tuple, entropy: np.ndarray | None = None) -> int:
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


def _level(ctx: Context, lab_all: np.ndarray, seqs, val_people, val_seqs, shared, embeddings,
           s: AnalysisSettings, seed_offset: int) -> tuple[dict, dict]:
    """Everything for one label column: headline, baselines, embeddings, comparisons."""
    groups = sorted(set(lab_all))
    gid = {g: i for i, g in enumerate(groups)}
    ids_all = np.array([gid[x] for x in lab_all])
    G = len(groups)
    people = ctx.people
    y = ids_all[people]
    y_val = ids_all[val_people]
    allowed = SCHEMES if s.inversion == "all" else (s.inversion,)
    rng = np.random.default_rng(s.seed + 1000 * seed_offset)
    perms = np.stack([rng.permutation(len(people)) for _ in range(s.permutations)]) if s.permutations else None

    val_model = score_matrices(shared["model_val"], val_people, y_val, G)
    val_entropy = shared["model_val_entropy"]
    pick, pick_none = _choose(val_model, allowed, val_entropy), _choose(val_model, ("none",), val_entropy)
    model = score_matrices(shared["model"], people, y, G, perms)
    un_pick = _choose(score_matrices(shared["untrained_val"], val_people, y_val, G), allowed,
                      shared["untrained_val_entropy"])
    untrained = score_matrices(shared["untrained"], people, y, G)

    target_h = float(torch.stack([row_entropy(a[pick]) for a in shared["model"].stacks]).mean())
    soft, temps = {}, {}
    for name, sims in shared["similarities"].items():  # each at the model's headline entropy
        temps[name] = match_temperature(sims, target_h)
        soft[name] = score_matrices(softmax_attention(sims, seqs, temps[name]), people, y, G,
                                    perms if name == "softmax_king" else None)

    scheme, layer, head = model.index[pick]
    p_bh_groups = bh(model.p_group[pick])
    headline = {"layer": layer, "head": head, "scheme": scheme, **model.row(pick),
                "chosen_on": "val",
                "why": f"highest mean lift over groups on {len(val_people)} validation people among schemes "
                       f"{list(allowed)} (lifts within {LIFT_TIE:.1%} of the best count as a tie, broken by the "
                       f"highest attention entropy), then measured on {s.split} people",
                "per_group": {g: {"n": int((y == i).sum()), "intra_share": float(model.shares[pick, i]),
                                  "chance": float(model.chance[i]), "lift": float(model.lifts[pick, i]),
                                  "p_value": float(model.p_group[pick, i]), "p_bh": float(p_bh_groups[i])}
                              for i, g in enumerate(groups) if (y == i).any()}}
    if s.split == "val":
        headline["selection_note"] = "chosen and measured on the same validation people: p not selection-adjusted"
    sn, ln, hn = model.index[pick_none]
    us, ul, uh = untrained.index[un_pick]
    block = {
        "groups": {g: int((y == i).sum()) for i, g in enumerate(groups)},
        "chance": model.macro_chance,
        "headline": headline,
        "headline_no_inversion": {"layer": ln, "head": hn, "scheme": "none", **model.row(pick_none)},
        "baselines": {
            "chance": {"intra_share": model.macro_chance, "lift": 1.0},
            "untrained": {**untrained.row(un_pick), "layer": ul, "head": uh, "scheme": us,
                          "chosen_on": "val"},
            **{name: {**sc.row(0), "temperature": temps[name], "matched_entropy_nats": target_h,
                      "what": ATTENTION_BASELINE_NOTES[name]} for name, sc in soft.items()},
        },
    }
    # -- embeddings and the paired comparisons -------------------------------------------
    emb, hits = {}, {}
    for name, x in embeddings.items():
        emb[name], hits[name] = embedding_scores(x, y, s.seed)
    block["embedding"] = emb.pop("model")
    block["embedding_baselines"] = emb
    boot = dict(n=len(people), n_boot=s.bootstrap, seed=s.seed + 7 + 1000 * seed_offset)
    comparisons = {
        "untrained": paired_bootstrap(model.share_stat(pick), untrained.share_stat(un_pick), figure="intra_share",
                                      **boot),
        **{name: paired_bootstrap(model.share_stat(pick), sc.share_stat(0), figure="intra_share", **boot)
           for name, sc in soft.items()},
    }
    for name in block["embedding_baselines"]:
        comparisons[name] = paired_bootstrap(mean_of(hits["model"]), mean_of(hits[name]),
                                             figure="knn5_accuracy", **boot)
    block["comparisons"] = {k: v.as_dict() for k, v in comparisons.items()}
    block["strongest"] = {
        "attention": max(soft, key=lambda n: block["baselines"][n]["intra_share"]),
        "embedding": max(emb, key=lambda n: emb[n]["knn5_accuracy"]) if emb else None,
    }
    detail = {"groups": groups, "labels": ids_all, "model": model, "untrained": untrained, "un_pick": un_pick,
              "soft": soft, "pick": pick, "seqs": seqs, "stacks": shared["model"].stacks,
              "embedding": embeddings["model"], "y": y, "knn": {k: v["knn5_accuracy"] for k, v in
                                                                  {"model": block["embedding"], **emb}.items()}}
    return block, detail


def _method_rows(level: str, b: dict) -> list[dict]:
    """The ``methods`` table: one row per method and figure, at one label level."""
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


def headline_line(summary: dict) -> str:
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

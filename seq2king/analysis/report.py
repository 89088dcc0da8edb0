"""Analyse a trained run: does attention recover population structure on unseen people?

``analyze(run_dir, ...)`` rebuilds the run's datamodule from its saved config,
loads the checkpoint (``weights_only=True``), extracts attention for every layer
and head over sequences of analysed people, and writes ``run_dir/analysis/``:
``summary.json``, ``connectivity.csv``, plots and offline BERTViz pages.

The headline (layer, head, inversion scheme) is chosen on VALIDATION people and
reported on the analysed split (test by default), beside baselines computed on
the same sequences: chance, the same architecture untrained, and softmax over
KING values with its temperature matched to the model's attention entropy.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seq2king.analysis.connectivity import (SCHEMES, Masses, apply_scheme, masses, match_temperature,
                                            p_values, permutation_lifts, row_entropy, softmax_king,
                                            top1_share)
from seq2king.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class AnalysisSettings:
    split: str = "test"
    max_sequence: int = 256  # people per sequence; everyone in one when they fit
    coverage: int = 4  # with several sequences: how many each person appears in
    permutations: int = 1000
    inversion: str = "all"  # all | none | complement | negate: schemes the headline may use
    bertviz_people: int = 24
    n_clusters: int = 4  # k-means k when there are no labels
    seed: int = 0
    device: str = "cpu"


# ----------------------------------------------------------------------------- loading


def find_checkpoint(run_dir: Path) -> Path:
    ckpts = run_dir / "checkpoints"
    best = sorted(p for p in ckpts.glob("epoch_*.ckpt"))
    if best:
        return best[-1]
    if (ckpts / "last.ckpt").exists():
        return ckpts / "last.ckpt"
    raise InputError(f"{run_dir}: no checkpoints/epoch_*.ckpt or checkpoints/last.ckpt; is it a train run?")


def load_run(run_dir: str | None = None, ckpt_path: str | None = None, device: str = "cpu"):
    """``(cfg, datamodule, module)`` of a train run, the model in eval mode."""
    import hydra
    from omegaconf import OmegaConf

    from seq2king.model.module import Seq2KingModule

    if not run_dir and not ckpt_path:
        raise InputError("give run_dir=DIR (a train run) or ckpt_path=FILE")
    if ckpt_path:
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.exists():
            raise InputError(f"ckpt_path={ckpt_path}: file not found")
        run_dir = Path(run_dir) if run_dir else ckpt_path.resolve().parent.parent
    else:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(f"run_dir={run_dir}: not a directory")
        ckpt_path = find_checkpoint(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.exists():
        raise InputError(f"{run_dir}: no .hydra/config.yaml; analyze needs the train run's directory")
    cfg = OmegaConf.load(cfg_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
    module = Seq2KingModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval().to(device)
    log.info("loaded %s", ckpt_path)
    return cfg, datamodule, module, run_dir, Path(ckpt_path)


# ----------------------------------------------------------------------------- sequences


def make_sequences(people: np.ndarray, max_sequence: int, coverage: int, seed: int) -> list[np.ndarray]:
    """Everyone in one sequence when they fit, else ``coverage`` shuffled passes cut in pieces."""
    people = np.sort(np.asarray(people))
    if len(people) <= max_sequence:
        return [people]
    rng = np.random.default_rng(seed)
    seqs = []
    n_chunks = int(np.ceil(len(people) / max_sequence))
    for _ in range(coverage):
        order = rng.permutation(people)
        seqs.extend(np.array_split(order, n_chunks))
    return seqs


@dataclass
class Extracted:
    seqs: list[np.ndarray]  # cohort positions per sequence
    stacks: list[torch.Tensor]  # per sequence (m, n, n): schemes x layers x (heads + mean)
    embeddings: dict[int, np.ndarray]  # cohort position -> mean final embedding


def index_of(n_layers: int, n_heads: int, schemes=SCHEMES) -> list[tuple[str, int, str]]:
    """(scheme, layer 1-based, head '1'..'H' or 'mean') of each stacked matrix."""
    heads = [str(h + 1) for h in range(n_heads)] + ["mean"]
    return [(s, layer + 1, h) for s in schemes for layer in range(n_layers) for h in heads]


@torch.no_grad()
def extract(net, datamodule, seqs: list[np.ndarray], schemes=SCHEMES, device="cpu") -> Extracted:
    from tqdm.auto import tqdm

    stacks, emb_sum, emb_cnt = [], {}, {}
    for seq in tqdm(seqs, desc="attention", leave=False, disable=len(seqs) < 4):
        batch = {k: v.to(device) for k, v in datamodule.collate([seq]).items()}
        _, extra = net(batch, need_weights=True)
        w = torch.stack([x[0] for x in extra["weights"]]).double()  # (L, H, n, n)
        s = torch.stack([x[0] for x in extra["scores"]]).double()
        per_scheme = []
        for scheme in schemes:
            a = apply_scheme(w, s, scheme)
            per_scheme.append(torch.cat([a, a.mean(1, keepdim=True)], dim=1))  # (L, H+1, n, n)
        n = len(seq)
        stacks.append(torch.stack(per_scheme).reshape(-1, n, n).cpu())
        h = extra["embeddings"][0].double().cpu().numpy()
        for pos, vec in zip(seq, h):
            emb_sum[int(pos)] = emb_sum.get(int(pos), 0) + vec
            emb_cnt[int(pos)] = emb_cnt.get(int(pos), 0) + 1
    return Extracted(seqs, stacks, {p: emb_sum[p] / emb_cnt[p] for p in emb_sum})


# ----------------------------------------------------------------------------- connectivity


def table(ex: Extracted, label_ids: np.ndarray, n_groups: int) -> Masses:
    total = None
    for seq, a in zip(ex.seqs, ex.stacks):
        m = masses(a, torch.from_numpy(label_ids[seq]), n_groups)
        total = m if total is None else total + m
    return total


def choose(val: Masses, idx: list, allowed: tuple) -> int:
    """Matrix with the highest macro lift on validation people, among allowed schemes."""
    lift = val.macro_lift()
    ok = np.array([s in allowed for s, _, _ in idx])
    lift = np.where(ok & np.isfinite(lift), lift, -np.inf)
    return int(np.argmax(lift))


def perm_test(ex: Extracted, label_ids: np.ndarray, n_groups: int, n_perm: int, seed: int,
              people: np.ndarray, per_group: bool = False):
    pos = {int(p): i for i, p in enumerate(people)}
    labels = torch.from_numpy(label_ids[people])
    seqs = [(a, torch.tensor([pos[int(p)] for p in seq])) for seq, a in zip(ex.seqs, ex.stacks)]
    return permutation_lifts(seqs, labels, n_groups, n_perm, seed, per_group=per_group)


# ----------------------------------------------------------------------------- embeddings


def embedding_scores(x: np.ndarray, y: np.ndarray, n_groups: int, seed: int) -> dict:
    """kNN-5 leave-one-out accuracy and k-means ARI (torchmetrics) of features ``x``."""
    from sklearn.cluster import KMeans
    from torchmetrics.functional.classification import multiclass_accuracy
    from torchmetrics.functional.clustering import adjusted_rand_score

    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn5 = np.argsort(d, axis=1)[:, :5]
    votes = np.zeros((len(x), n_groups))
    for k in range(5):  # nearer neighbours break ties
        np.add.at(votes, (np.arange(len(x)), y[nn5[:, k]]), 1.0 + 1e-3 * (5 - k))
    pred = votes.argmax(1)
    acc = multiclass_accuracy(torch.from_numpy(pred), torch.from_numpy(y), num_classes=n_groups, average="micro")
    clusters = KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit_predict(x)
    with warnings.catch_warnings():  # torchmetrics' sparse contingency table warns on every call
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        ari = adjusted_rand_score(torch.from_numpy(clusters), torch.from_numpy(y))
    return {"knn5_accuracy": float(acc), "ari": float(ari)}


def king_pca(king: np.ndarray, k: int = 10) -> np.ndarray:
    c = king - king.mean(0, keepdims=True) - king.mean(1, keepdims=True) + king.mean()
    vals, vecs = np.linalg.eigh(c)
    order = np.argsort(vals)[::-1][:k]
    return vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))


# ----------------------------------------------------------------------------- the run


def analyze(run_dir: str | None = None, ckpt_path: str | None = None, settings: AnalysisSettings | None = None,
            wandb_log: bool = True) -> dict:
    s = settings or AnalysisSettings()
    if s.inversion not in ("all", *SCHEMES):
        raise InputError(f"analysis.inversion={s.inversion!r}: choose all, none, complement or negate")
    if s.split not in ("train", "val", "test"):
        raise InputError(f"split={s.split!r}: choose train, val or test")
    torch.manual_seed(s.seed)
    cfg, dm, module, run_dir, ckpt = load_run(run_dir, ckpt_path, s.device)
    net = module.net
    # A sweep over analysis.inversion keeps one directory per setting.
    out = run_dir / ("analysis" if s.inversion == "all" else f"analysis_{s.inversion}")
    out.mkdir(parents=True, exist_ok=True)
    summary_dir = out
    cohort = dm.cohort
    people = np.sort(dm.splits[s.split])
    max_seq = s.max_sequence
    if net.cfg.head == "positional" or net.cfg.positional:
        max_seq = min(max_seq, net.cfg.max_len)
    transductive = net.cfg.tokenizer == "index"
    n_layers = net.cfg.depth + net.cfg.decoder_depth
    idx = index_of(n_layers, net.cfg.heads)
    summary = {
        "split": s.split, "n_individuals": int(len(people)), "run_dir": str(run_dir), "checkpoint": str(ckpt),
        "analysis_dir": str(summary_dir), "inversion_allowed": s.inversion, "permutations": s.permutations,
        "tokenizer": net.cfg.tokenizer,
        "head": net.cfg.head,
        "head_note": ("attention head: the last layer's attention logits are, by construction, the model's "
                      "predicted kinship; earlier layers are free" if net.cfg.head == "attention" else
                      "the prediction head reads embeddings; attention is not tied to kinship by construction"),
        "note": ("index tokenizer: people outside the training split have untrained embeddings, so only a "
                 "transductive analysis (split=train) is meaningful for this model" if transductive else
                 "kinship tokenizer: analysed people are embedded from their KING to the training panel only"),
    }
    seqs = make_sequences(people, max_seq, s.coverage, s.seed)
    ex = extract(net, dm, seqs, device=s.device)
    if cohort.labels is None:
        return _unlabelled(summary, ex, people, s, out, cohort, wandb_log, run_dir)

    groups = sorted(set(cohort.labels))
    gid = {g: i for i, g in enumerate(groups)}
    label_ids = np.array([gid[x] for x in cohort.labels])
    G = len(groups)
    summary["groups"] = {g: int((label_ids[people] == gid[g]).sum()) for g in groups}

    # -- the model, selected on validation people -------------------------------------
    val_people = np.sort(dm.splits["val"])
    val_ex = ex if s.split == "val" else extract(net, dm, make_sequences(val_people, max_seq, s.coverage, s.seed + 1),
                                                 device=s.device)
    allowed = SCHEMES if s.inversion == "all" else (s.inversion,)
    val_m = table(val_ex, label_ids, G)
    pick = choose(val_m, idx, allowed)
    pick_none = choose(val_m, idx, ("none",))
    m = table(ex, label_ids, G)
    perm, perm_groups = perm_test(ex, label_ids, G, s.permutations, s.seed, people, per_group=True)
    p_macro = p_values(m.macro_lift(), perm)
    p_group = p_values(m.shares() / m.chance()[None, :], perm_groups)  # (m, g)

    # -- baselines on the same sequences ---------------------------------------------
    from seq2king.model.transformer import Seq2King

    torch.manual_seed(s.seed)
    untrained = Seq2King(net.cfg).eval().to(s.device)
    un_val = table(extract(untrained, dm, val_ex.seqs, device=s.device), label_ids, G)
    un_pick = choose(un_val, idx, allowed)
    un_ex = extract(untrained, dm, seqs, device=s.device)
    un_m = table(un_ex, label_ids, G)

    kings = [torch.from_numpy(cohort.king[np.ix_(q, q)]) for q in seqs]
    target_h = float(torch.stack([row_entropy(a[pick]) for a in ex.stacks]).mean())
    temp = match_temperature(kings, target_h)
    king_ex = Extracted(seqs, [softmax_king(k, temp)[None] for k in kings], {})
    king_m = table(king_ex, label_ids, G)
    king_p = p_values(king_m.macro_lift(), perm_test(king_ex, label_ids, G, s.permutations, s.seed, people))

    def top1(stacks, i):
        return float(np.mean([top1_share(a[i], torch.from_numpy(label_ids[q])) for q, a in zip(seqs, stacks)]))

    scheme, layer, head = idx[pick]
    summary["chance"] = m.macro_chance()
    summary["headline"] = {
        "layer": layer, "head": head, "scheme": scheme, "intra_share": float(m.macro_share()[pick]),
        "lift": float(m.macro_lift()[pick]), "p_value": float(p_macro[pick]),
        "top1_share": top1(ex.stacks, pick),
        "chosen_on": "val", "why": f"highest mean lift over groups on {len(val_people)} validation people "
                                   f"among schemes {list(allowed)}, then measured on {s.split} people",
        "per_group": {g: {"intra_share": float(m.shares()[pick, i]), "chance": float(m.chance()[i]),
                          "lift": float(m.shares()[pick, i] / m.chance()[i]),
                          "p_value": float(p_group[pick, i])} for i, g in enumerate(groups)},
    }
    sn, ln, hn = idx[pick_none]
    summary["headline_no_inversion"] = {
        "layer": ln, "head": hn, "scheme": "none", "intra_share": float(m.macro_share()[pick_none]),
        "lift": float(m.macro_lift()[pick_none]), "p_value": float(p_macro[pick_none])}
    us, ul, uh = idx[un_pick]
    summary["baselines"] = {
        "chance": {"intra_share": m.macro_chance()},
        "untrained": {"intra_share": float(un_m.macro_share()[un_pick]), "lift": float(un_m.macro_lift()[un_pick]),
                      "layer": ul, "head": uh, "scheme": us, "top1_share": top1(un_ex.stacks, un_pick)},
        "softmax_king": {"intra_share": float(king_m.macro_share()[0]), "lift": float(king_m.macro_lift()[0]),
                         "p_value": float(king_p[0]), "temperature": temp, "matched_entropy_nats": target_h,
                         "top1_share": float(np.mean([top1_share(k, torch.from_numpy(label_ids[q]))
                                                      for q, k in zip(seqs, kings)]))},
    }
    # -- embeddings -------------------------------------------------------------------
    emb = np.stack([ex.embeddings[int(p)] for p in people])
    y = label_ids[people]
    sub = cohort.king[np.ix_(people, people)]
    summary["embedding"] = embedding_scores(emb, y, G, s.seed)
    summary["embedding_baselines"] = {"king_rows": embedding_scores(sub, y, G, s.seed),
                                      "king_pca10": embedding_scores(king_pca(sub), y, G, s.seed)}
    summary["paper_table"] = _paper_table(m, idx, groups, n_layers)
    _write_connectivity(out / "connectivity.csv", m, idx, groups, p_macro, p_group)
    _plots(out, ex, pick, idx, m, un_m, king_m, label_ids, groups, emb, y, n_layers, net.cfg.heads)
    _bertviz(out, net, dm, people, label_ids, groups, cohort, s)
    _write_json(out / "summary.json", summary)
    if wandb_log:
        _log_wandb(run_dir, out, summary)
    return summary


def headline_line(summary: dict) -> str:
    if "headline" not in summary:
        return f"no labels: {summary['n_individuals']} people analysed, no connectivity figures"
    h, b = summary["headline"], summary["baselines"]
    p, n_perm = h["p_value"], summary["permutations"]
    # the smallest p a permutation test can give is 1 / (n + 1): say "below 1/n" then
    ptxt = f"p < {1 / n_perm:.2g}" if p * (n_perm + 1) <= 1 + 1e-9 else f"p = {p:.3g}"
    head = "head mean" if h["head"] == "mean" else f"head {h['head']}"
    return (f"layer {h['layer']} {head} ({h['scheme']}): intra share {h['intra_share']:.2f} on "
            f"{summary['n_individuals']} {summary['split']} individuals, chance {summary['chance']:.2f}, "
            f"lift {h['lift']:.1f}, {ptxt}; untrained {b['untrained']['intra_share']:.2f}, "
            f"softmax-KING {b['softmax_king']['intra_share']:.2f}")


# ----------------------------------------------------------------------------- outputs


def _paper_table(m: Masses, idx, groups, n_layers) -> dict:
    """The paper's form: per layer (head mean), each group's share, raw and inverted (1 - share)."""
    out = {}
    for i, (scheme, layer, head) in enumerate(idx):
        if scheme == "none" and head == "mean":
            out[f"layer {layer}"] = {g: {"connection_value_ratio": float(m.shares()[i, k]),
                                         "inverted": float(1 - m.shares()[i, k])} for k, g in enumerate(groups)}
    return out


def _write_connectivity(path: Path, m: Masses, idx, groups, p_macro, p_group) -> None:
    from seq2king.fileio import atomic_files

    shares, chance = m.shares(), m.chance()
    with atomic_files(path) as (tmp,), open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "head", "scheme", "group", "intra_share", "chance", "lift", "p_value"])
        for i, (scheme, layer, head) in enumerate(idx):
            for k, g in enumerate(groups):
                w.writerow([layer, head, scheme, g, f"{shares[i, k]:.6f}", f"{chance[k]:.6f}",
                            f"{shares[i, k] / chance[k]:.6f}", f"{p_group[i, k]:.6g}"])
            w.writerow([layer, head, scheme, "mean", f"{m.macro_share()[i]:.6f}", f"{m.macro_chance():.6f}",
                        f"{m.macro_lift()[i]:.6f}", f"{p_macro[i]:.6g}"])


def _write_json(path: Path, obj) -> None:
    from seq2king.fileio import atomic_files

    with atomic_files(path) as (tmp,):
        tmp.write_text(json.dumps(obj, indent=1))


def _plots(out, ex, pick, idx, m, un_m, king_m, label_ids, groups, emb, y, n_layers, n_heads) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 1. attention heatmap of the headline matrix, people ordered by group
    seq = ex.seqs[0]
    a = ex.stacks[0][pick].numpy().copy()
    np.fill_diagonal(a, np.nan)
    order = np.argsort(label_ids[seq], kind="stable")
    lab = label_ids[seq][order]
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(a[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
    bounds = np.flatnonzero(np.diff(lab)) + 0.5
    for b in bounds:
        ax.axhline(b, color="white", lw=1)
        ax.axvline(b, color="white", lw=1)
    centers = [np.mean(np.flatnonzero(lab == k)) for k in range(len(groups)) if (lab == k).any()]
    names = [g for k, g in enumerate(groups) if (lab == k).any()]
    ax.set_xticks(centers, names)
    ax.set_yticks(centers, names)
    scheme, layer, head = idx[pick]
    ax.set_title(f"attention, layer {layer} head {head} ({scheme}); self masked")
    ax.set_xlabel("attended person")
    ax.set_ylabel("attending person")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "attention_heatmap.png", dpi=120)
    plt.close(fig)

    # 2. per-layer connectivity (head mean) for each scheme, with chance and baselines
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(SCHEMES)
    for k, sch in enumerate(SCHEMES):
        vals = [m.macro_share()[idx.index((sch, layer, "mean"))] for layer in range(1, n_layers + 1)]
        ax.bar(np.arange(1, n_layers + 1) + (k - 1) * width, vals, width, label=f"model ({sch})")
    ax.axhline(m.macro_chance(), color="black", ls="--", label="chance")
    un_best = float(un_m.macro_share()[[i for i, t in enumerate(idx) if t[0] == "none"]].max())
    ax.axhline(un_best, color="grey", ls=":", label="untrained (best, none)")
    ax.axhline(float(king_m.macro_share()[0]), color="red", ls="-.", label="softmax-KING (entropy matched)")
    ax.set_xlabel("layer")
    ax.set_ylabel("intra-group share (mean over groups)")
    ax.set_xticks(range(1, n_layers + 1))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "connectivity_by_layer.png", dpi=120)
    plt.close(fig)

    # 3. embeddings in 2-D (PCA), coloured by group
    x = emb - emb.mean(0)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    xy = u[:, :2] * sv[:2]
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, g in enumerate(groups):
        sel = y == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, label=f"{g} ({sel.sum()})")
    ax.set_xlabel("PC1 of final-layer embeddings")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "embeddings_pca.png", dpi=120)
    plt.close(fig)


@torch.no_grad()
def _bertviz(out, net, dm, people, label_ids, groups, cohort, s) -> None:
    from seq2king.analysis.bertviz_html import views
    from seq2king.fileio import atomic_files

    rng = np.random.default_rng(s.seed)
    per = max(1, s.bertviz_people // max(1, len(groups)))
    chosen = []
    for k in range(len(groups)):
        members = people[label_ids[people] == k]
        chosen.extend(rng.choice(members, min(per, len(members)), replace=False).tolist())
    chosen = np.array(sorted(chosen, key=lambda p: (label_ids[p], p)))[: max(2, s.bertviz_people)]
    batch = dm.collate([chosen])
    _, extra = net(batch, need_weights=True)
    tokens = [f"{cohort.ids[p]} ({groups[label_ids[p]]})" for p in chosen]
    pages = views(extra["weights"], tokens)
    for name, html in pages.items():
        with atomic_files(out / f"bertviz_{name}.html") as (tmp,):
            tmp.write_text(html, encoding="utf-8")


def _log_wandb(run_dir: Path, out: Path, summary: dict) -> None:
    """Log to the training run (resumed by id) or a new run in its group, offline by default."""
    import os

    import wandb

    from seq2king.training import wandb_mode

    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    os.environ["WANDB_DIR"] = str(out)
    kwargs = dict(project="seq2king", dir=str(out), mode=wandb_mode(), job_type="analysis")
    if run_id:
        kwargs.update(id=run_id, resume="allow")
    else:
        kwargs.update(group=run_dir.parent.name)
    try:
        run = wandb.init(**kwargs)
        flat = {}
        if "headline" in summary:
            h, b = summary["headline"], summary["baselines"]
            flat = {"analysis/intra_share": h["intra_share"], "analysis/lift": h["lift"],
                    "analysis/p_value": h["p_value"], "analysis/chance": summary["chance"],
                    "analysis/untrained_intra_share": b["untrained"]["intra_share"],
                    "analysis/softmax_king_intra_share": b["softmax_king"]["intra_share"]}
        flat.update({f"analysis/embedding_{k}": v for k, v in summary.get("embedding", {}).items()})
        run.summary.update(flat)
        log_items = dict(flat)
        if (out / "connectivity.csv").exists():
            with open(out / "connectivity.csv") as fh:
                rows = list(csv.reader(fh))
            log_items["analysis/connectivity"] = wandb.Table(columns=rows[0], data=rows[1:])
        for png in sorted(out.glob("*.png")):
            log_items[f"analysis/{png.stem}"] = wandb.Image(str(png))
        for page in sorted(out.glob("bertviz_*.html")):
            log_items[f"analysis/{page.stem}"] = wandb.Html(page.read_text(encoding="utf-8"), inject=False)
        run.log(log_items)
        run.finish()
    except Exception:  # analysis results are on disk either way
        log.exception("W&B logging failed; the analysis files are written")


def _unlabelled(summary, ex, people, s, out, cohort, wandb_log, run_dir) -> dict:
    from sklearn.cluster import KMeans

    emb = np.stack([ex.embeddings[int(p)] for p in people])
    x = (emb - emb.mean(0)) / (emb.std(0) + 1e-12)
    k = min(s.n_clusters, len(people))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=s.seed).fit_predict(x)
    summary["groups"] = None
    summary["connectivity"] = "not computed: the data has no labels (give data.labels=TSV to the train run)"
    summary["clusters"] = {"k": k, "sizes": np.bincount(clusters, minlength=k).tolist(),
                           "assignments": {cohort.ids[p]: int(c) for p, c in zip(people, clusters)}}
    _write_json(out / "summary.json", summary)
    if wandb_log:
        _log_wandb(run_dir, out, summary)
    return summary

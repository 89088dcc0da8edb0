"""What an analysis writes: tables, plots, offline BERTViz pages and the W&B record.

Every file goes through :mod:`seq2king.fileio` (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import torch

from seq2king import runtime
from seq2king.analysis.bertviz_html import views
from seq2king.analysis.connectivity import SCHEMES
from seq2king.analysis.stats import bh
from seq2king.fileio import atomic_files, write_json, write_text

log = logging.getLogger(__name__)

__all__ = ["write_json", "write_connectivity", "paper_table", "plots", "bertviz", "log_wandb", "unlabelled",
           "unlabelled_pictures"]

CONNECTIVITY_COLUMNS = ["level", "layer", "head", "scheme", "group", "intra_share", "chance", "lift", "p_value",
                        "p_bh"]


def write_connectivity(path: Path, levels: dict) -> None:
    """Every level x matrix x (group and mean): share, chance, lift, permutation p and its BH adjustment.

    The BH adjustment runs over all p-values of one level in this file.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CONNECTIVITY_COLUMNS)
    for level, d in levels.items():
        m, groups = d.model, d.groups
        present = [k for k in range(len(groups)) if (d.y == k).any()]
        p_all = np.concatenate([m.p_group[:, present], m.p_macro[:, None]], axis=1)
        adj = bh(p_all)
        for i, (scheme, layer, head) in enumerate(m.index):
            for j, k in enumerate(present):
                w.writerow([level, layer, head, scheme, groups[k], f"{m.shares[i, k]:.6f}", f"{m.chance[k]:.6f}",
                            f"{m.lifts[i, k]:.6f}", f"{m.p_group[i, k]:.6g}", f"{adj[i, j]:.6g}"])
            w.writerow([level, layer, head, scheme, "mean", f"{m.macro_share[i]:.6f}", f"{m.macro_chance:.6f}",
                        f"{m.macro_lift[i]:.6f}", f"{m.p_macro[i]:.6g}", f"{adj[i, -1]:.6g}"])
    write_text(path, buf.getvalue())


def paper_table(m, groups) -> dict:
    """The paper's form: per layer (head mean), each group's share, raw and inverted (1 - share)."""
    out = {}
    for i, (scheme, layer, head) in enumerate(m.index):
        if scheme == "none" and head == "mean":
            out[f"layer {layer}"] = {g: {"connection_value_ratio": float(m.shares[i, k]),
                                         "inverted": float(1 - m.shares[i, k])}
                                     for k, g in enumerate(groups) if np.isfinite(m.shares[i, k])}
    return out


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    with atomic_files(path) as (tmp,):
        fig.savefig(tmp, dpi=120, format="png")


# one hue family per superpopulation (matplotlib sequential colormaps), shades within it per population
FAMILIES = ("Blues", "Oranges", "Greens", "Reds", "Purples", "Greys", "YlOrBr", "PuRd", "BuGn", "RdPu")


def group_style(groups: list[str], parent: dict | None = None) -> tuple[list[int], list[tuple]]:
    """Display order and an RGBA colour for each group.

    With ``parent`` (group -> superpopulation, when the labels have such a level): groups ordered by
    superpopulation, then name; each superpopulation one hue family, its populations distinguishable
    shades of it. Without: the label order, tab10 / tab20, or evenly spaced hues past 20 groups.
    """
    import colorsys

    import matplotlib

    n = len(groups)
    if parent and all(g in parent for g in groups):
        supers = sorted({parent[g] for g in groups})
        order = sorted(range(n), key=lambda k: (supers.index(parent[groups[k]]), groups[k]))
        colours: list = [None] * n
        for si, sp in enumerate(supers):
            members = [k for k in order if parent[groups[k]] == sp]
            cmap = matplotlib.colormaps[FAMILIES[si % len(FAMILIES)]]
            shades = np.linspace(0.95, 0.4, len(members)) if len(members) > 1 else [0.7]
            for k, t in zip(members, shades):
                colours[k] = tuple(float(c) for c in cmap(float(t)))
        return order, colours
    if n <= 20:
        cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
        return list(range(n)), [tuple(float(c) for c in cmap(k)) for k in range(n)]
    return list(range(n)), [(*colorsys.hls_to_rgb(k / n, 0.35 + 0.25 * (k % 2), 0.75), 1.0) for k in range(n)]


def _heatmap(path: Path, a: np.ndarray, lab: np.ndarray, names: list[str], title: str,
             style: tuple | None = None, parent: dict | None = None) -> None:
    plt = pyplot()
    a = a.copy()
    np.fill_diagonal(a, np.nan)
    order_g, colours = style or group_style(names)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order_g] = np.arange(len(names))
    order = np.argsort(rank[lab], kind="stable")  # people grouped, groups in display order
    r = rank[lab[order]]
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(a[np.ix_(order, order)], cmap="viridis", interpolation="nearest")
    for b in np.flatnonzero(np.diff(r)) + 0.5:
        sup = parent and parent.get(names[order_g[r[int(b - 0.5)]]]) != parent.get(names[order_g[r[int(b + 0.5)]]])
        ax.axhline(b, color="white", lw=2.0 if sup else 0.6)
        ax.axvline(b, color="white", lw=2.0 if sup else 0.6)
    present = [k for k in order_g if (lab == k).any()]
    if len(present) <= 30:
        centers = [np.mean(np.flatnonzero(r == rank[k])) for k in present]
        ax.set_xticks(centers, [names[k] for k in present], rotation=90, fontsize=7)
        ax.set_yticks(centers, [names[k] for k in present], fontsize=7)
        for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
            for t, k in zip(ticks, present):
                t.set_color(colours[k])
    ax.set_title(title)
    ax.set_xlabel("attended person")
    ax.set_ylabel("attending person")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _pca2(emb: np.ndarray) -> np.ndarray:
    x = emb - emb.mean(0)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :2] * sv[:2]


def _scatter(path: Path, emb: np.ndarray, y: np.ndarray, names: list[str], what: str,
             style: tuple | None = None) -> None:
    plt = pyplot()
    xy = _pca2(emb)
    order, colours = style or group_style(names)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for k in order:
        sel = y == k
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=colours[k], label=f"{names[k]} ({sel.sum()})")
    ax.set_xlabel(f"PC1 of {what}")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=6, ncol=2 if len(names) > 10 else 1)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def umap_plots(out: Path, levels: dict, primary: str, inputs: dict[str, np.ndarray], seed: int = 0) -> None:
    """``embeddings_umap[_LEVEL].png``: UMAP (umap-learn, seeded) of the model's embedding beside UMAP of the
    genotype PCs, coloured as the other pictures; the layout is computed once and coloured per level."""
    import umap

    plt = pyplot()
    xy = {name: umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed).fit_transform(np.asarray(x, float))
          for name, x in inputs.items()}
    for level, d in levels.items():
        sfx = "" if level == primary else f"_{level}"
        groups, y = d.groups, d.y
        order, colours = group_style(groups, d.extra.get("parent"))
        fig, axes = plt.subplots(1, len(xy), figsize=(6 * len(xy) + 2, 5.2), squeeze=False)
        for ax, (name, pts) in zip(axes[0], xy.items()):
            for k in order:
                sel = y == k
                if sel.any():
                    ax.scatter(pts[sel, 0], pts[sel, 1], s=8, color=colours[k], label=f"{groups[k]} ({sel.sum()})")
            ax.set_title(f"UMAP of {name}")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][-1].legend(fontsize=6, ncol=2 if len(groups) > 10 else 1, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        save_figure(fig, out / f"embeddings_umap{sfx}.png")
        plt.close(fig)


def embedding_html(path: Path, emb: np.ndarray, y: np.ndarray, names: list[str], ids: list[str],
                   labels: dict[str, list[str]], style: tuple, parent: dict | None = None) -> None:
    """An interactive scatter of the embedding (its first two PCs, as the PNG) that works offline: plotly's
    JavaScript inlined, one legend entry per group (click to hide, double-click to isolate), grouped under
    the superpopulation, each point's ID and labels on hover. IDs and labels are HTML-escaped."""
    import html

    import plotly.graph_objects as go

    xy = _pca2(emb)
    order, colours = style
    fig = go.Figure()
    for k in order:
        sel = np.flatnonzero(y == k)
        if not len(sel):
            continue
        text = ["<br>".join([f"ID {html.escape(ids[i])}"] + [f"{html.escape(c)}: {html.escape(v[i])}"
                                                            for c, v in labels.items()]) for i in sel]
        r, g, b, a = colours[k]
        sup = html.escape(parent[names[k]]) if parent else None
        fig.add_trace(go.Scatter(
            x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=f"{html.escape(names[k])} ({len(sel)})",
            hovertext=text, hoverinfo="text", legendgroup=sup, legendgrouptitle_text=sup,
            marker=dict(size=6, color=f"rgba({int(255 * r)},{int(255 * g)},{int(255 * b)},{a:.2f})")))
    fig.update_layout(title="the model's embedding (first two PCs); hover for IDs, click the legend to toggle",
                      xaxis_title="PC1", yaxis_title="PC2", template="simple_white", width=950, height=700)
    write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))


def plots(out: Path, levels: dict, primary: str) -> None:
    """Per level: attention heat map of the headline, connectivity by layer beside the peers, embeddings."""
    plt = pyplot()
    for level, d in levels.items():
        sfx = "" if level == primary else f"_{level}"
        m, groups, pick = d.model, d.groups, d.pick
        parent = d.extra.get("parent")
        style = group_style(groups, parent)
        scheme, layer, head = m.index[pick]
        seq = d.seqs[0]
        _heatmap(out / f"attention_heatmap{sfx}.png", d.stacks[0][pick].numpy(), d.labels[seq], groups,
                 f"attention, layer {layer} head {head} ({scheme}); self masked", style, parent)
        _scatter(out / f"embeddings_pca{sfx}.png", d.model_embedding, d.y, groups, "the model's embeddings", style)
        if d.extra.get("ids") is not None:
            embedding_html(out / f"embedding{sfx}.html", d.model_embedding, d.y, groups, d.extra["ids"],
                           d.extra["label_table"], style, parent)

        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [3, 2]})
        layers = sorted({t[1] for t in m.index})
        width = 0.8 / len(SCHEMES)
        for k, sch in enumerate(SCHEMES):
            vals = [m.macro_share[m.index.index((sch, L, "mean"))] for L in layers]
            ax.bar(np.array(layers) + (k - 1) * width, vals, width, label=f"model ({sch}, head mean)")
        ax.axhline(m.macro_chance, color="black", ls="--", label="chance")
        un = d.untrained
        ax.axhline(float(un.macro_share[d.un_pick]), color="grey", ls=":", label="untrained (chosen on val)")
        styles = {"softmax_king": ("red", "-."), "softmax_inputs": ("purple", "-."), "softmax_pcs": ("orange", "--"),
                  "softmax_grm": ("brown", ":")}
        for name, sc in d.soft.items():  # every parameter-free baseline, at the headline's entropy
            color, ls = styles.get(name, ("black", ":"))
            ax.axhline(float(sc.macro_share[0]), color=color, ls=ls, label=f"{name} (entropy matched)")
        ax.axhline(float(m.macro_share[pick]), color="green", ls="-", lw=1,
                   label=f"model headline (L{layer} H{head} {scheme})")
        ax.set_xlabel("layer")
        ax.set_ylabel("intra-group share (mean over groups)")
        ax.set_xticks(layers)
        ax.set_ylim(0, 1)
        ax.set_title(f"attention: {level}")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
        names = list(d.knn)
        ax2.barh(names, [d.knn[k] for k in names], color=["green"] + ["grey"] * (len(names) - 1))
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("kNN-5 leave-one-out accuracy")
        ax2.set_title(f"embeddings: {level}")
        ax2.invert_yaxis()
        fig.tight_layout()
        save_figure(fig, out / f"connectivity_by_layer{sfx}.png")
        plt.close(fig)


@torch.no_grad()
def _bertviz_pages(out: Path, net, dm, chosen: np.ndarray, tokens: list[str]) -> None:
    _, extra = net(dm.collate([chosen]), need_weights=True)
    for name, html in views(extra["weights"], tokens).items():
        write_text(out / f"bertviz_{name}.html", html)


def _stratified(people: np.ndarray, groups_of: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ks = np.unique(groups_of[people])
    per = max(1, n // max(1, len(ks)))
    chosen = []
    for k in ks:
        members = people[groups_of[people] == k]
        chosen.extend(rng.choice(members, min(per, len(members)), replace=False).tolist())
    return np.array(sorted(chosen, key=lambda p: (groups_of[p], p)))[: max(2, n)]


def bertviz(out: Path, net, dm, people: np.ndarray, detail, s) -> None:
    """Head and model views over people stratified by group, tokens labelled ``ID (group)``."""
    lab, groups = detail.labels, detail.groups
    chosen = _stratified(people, lab, s.bertviz_people, s.seed)
    _bertviz_pages(out, net, dm, chosen, [f"{dm.cohort.ids[p]} ({groups[lab[p]]})" for p in chosen])


# ----------------------------------------------------------------------------- no labels


def unlabelled(out: Path, ctx, model_ex, s) -> dict:
    """k-means on the model's embeddings: ``clusters.tsv`` and the summary's ``clusters``."""
    from sklearn.cluster import KMeans

    people = ctx.people
    emb = np.stack([model_ex.embeddings[int(p)] for p in people])
    k = min(s.n_clusters, len(people))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=s.seed).fit_predict(emb)
    ids = ctx.cohort.ids
    write_text(out / "clusters.tsv", "sample\tcluster\n" + "".join(f"{ids[p]}\t{c}\n" for p, c in zip(people, clusters)))
    ctx.cache["clusters"] = clusters
    return {"groups": None,
            "connectivity": "not computed: the data has no labels (give data.labels=TSV to the train run)",
            "clusters": {"k": k, "method": "k-means on the model embeddings", "file": "clusters.tsv",
                         "sizes": np.bincount(clusters, minlength=k).tolist()}}


def unlabelled_pictures(out: Path, ctx, model_ex, s) -> dict:
    """Heat map and embeddings plot ordered / coloured by cluster, and the BERTViz pages."""
    people, clusters = ctx.people, ctx.cache["clusters"]
    names = [f"cluster {c}" for c in range(int(clusters.max()) + 1)]
    cl_of = np.zeros(len(ctx.cohort.ids), dtype=int)
    cl_of[people] = clusters
    emb = np.stack([model_ex.embeddings[int(p)] for p in people])
    last = [i for i, t in enumerate(model_ex.index) if t[0] == "none" and t[2] == "mean"][-1]
    seq = model_ex.seqs[0]
    return {
        "plots": lambda: (_heatmap(out / "attention_heatmap.png", model_ex.stacks[0][last].numpy(), cl_of[seq], names,
                                   "attention, last layer, head mean; people ordered by k-means cluster"),
                          _scatter(out / "embeddings_pca.png", emb, clusters, names, "the model's embeddings")),
        "bertviz": lambda: _bertviz_pages(out, ctx.net, ctx.datamodule,
                                          (chosen := _stratified(people, cl_of, s.bertviz_people, s.seed)),
                                          [f"{ctx.cohort.ids[p]} (cluster {cl_of[p]})" for p in chosen]),
    }


# ----------------------------------------------------------------------------- W&B


def log_wandb(run_dir: Path, out: Path, summary: dict, flat: dict | None = None) -> None:
    """Log to the training run (resumed by id) or a new run in its group, offline by default.

    ``flat``: scalars to log as they are (the audit report's)."""
    import os

    import wandb


    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else None
    os.environ["WANDB_DIR"] = str(out)
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs = dict(project="seq2king", dir=str(out), mode=runtime.wandb_mode(), job_type="analysis")
    if run_id:
        kwargs.update(id=run_id, resume="allow")
    else:
        kwargs.update(group=run_dir.parent.name)
    run = wandb.init(**kwargs)
    try:
        flat = dict(flat or {})
        for row in summary.get("methods", []):
            flat[f"analysis/{row['level']}/{row['kind']}/{row['method']}/{row['figure']}"] = row["value"]
        for level, block in summary.get("levels", {}).items():
            for name, c in block["comparisons"].items():
                flat[f"analysis/{level}/vs_{name}/difference"] = c["difference"]
                flat[f"analysis/{level}/vs_{name}/p_value"] = c["p_value"]
        run.summary.update(flat)
        items = dict(flat)
        if summary.get("methods"):
            cols = list(summary["methods"][0])
            items["analysis/methods"] = wandb.Table(columns=cols, data=[[r[c] for c in cols]
                                                                       for r in summary["methods"]])
        if (out / "connectivity.csv").exists():
            with open(out / "connectivity.csv") as fh:
                rows = list(csv.reader(fh))
            items["analysis/connectivity"] = wandb.Table(columns=rows[0], data=rows[1:])
        for png in sorted(out.glob("*.png")):
            items[f"analysis/{png.stem}"] = wandb.Image(str(png))
        for page in sorted(out.glob("bertviz_*.html")) + sorted(out.glob("embedding*.html")):
            items[f"analysis/{page.stem}"] = wandb.Html(page.read_text(encoding="utf-8"), inject=False)
        run.log(items)
    finally:
        run.finish()

"""Extracting attention and embeddings from a network over sequences of analysed people."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seq2king.analysis.connectivity import SCHEMES, apply_scheme


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


def longest_sequence(net, wanted: int) -> int:
    """``wanted``, capped at ``net``'s ``max_len`` where its positions or head have that length."""
    if net.cfg.head == "positional" or net.cfg.positional:
        return min(wanted, net.cfg.max_len)
    return wanted


def index_of(n_layers: int, n_heads: int, schemes=SCHEMES) -> list[tuple[str, int, str]]:
    """(scheme, layer 1-based, head '1'..'H' or 'mean') of each stacked matrix."""
    heads = [str(h + 1) for h in range(n_heads)] + ["mean"]
    return [(s, layer + 1, h) for s in schemes for layer in range(n_layers) for h in heads]


@dataclass
class Extracted:
    """Attention-like matrices over sequences of people (what a matrix method yields)."""

    seqs: list[np.ndarray]  # cohort positions per sequence
    stacks: list[torch.Tensor]  # per sequence (m, n, n), rows summing to 1 over the others
    index: list  # a label per matrix of the stack, e.g. (scheme, layer, head)
    embeddings: dict[int, np.ndarray] | None = None  # cohort position -> mean final embedding


@torch.no_grad()
def extract(net, datamodule, seqs: list[np.ndarray], schemes=SCHEMES, device="cpu") -> Extracted:
    """Every layer x (heads + head mean) x scheme of ``net`` on each sequence, plus mean embeddings."""
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
    index = index_of(w.shape[0], w.shape[1], schemes)
    return Extracted(seqs, stacks, index, {p: emb_sum[p] / emb_cnt[p] for p in emb_sum})

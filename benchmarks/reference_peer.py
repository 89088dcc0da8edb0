"""A minimal re-implementation of the reference Seq2KING training step, as a speed peer.

Written from the published description of EcotoneAI/Seq2KING (its own model class
and a plain PyTorch loop), not from its code: an ``nn.Transformer``-style
encoder-decoder (``nn.TransformerEncoder`` + ``nn.TransformerDecoder``, post-LN as
PyTorch builds them), d_model 120, 1 head, 3 encoder + 2 decoder layers,
feed-forward 512 with tanh, dropout 0.1, sinusoidal positions on the encoder input
(the decoder reads the plain embeddings), a learned embedding per person index, an
output ``Linear(120 -> 100)``; sequences of 2..100 people (lengths cycling through
2..100, people from shuffled permutations), min-max scaled KING targets padded to
100 columns with -1 and masked out of the MSE, batch 150, Adam 3e-4; batches padded
to their longest sequence by a ``DataLoader`` collate function.

:func:`measure` trains it for a number of steps and returns sequences/s, the figure
``benchmarks/train_throughput.py`` divides ours by.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

MAX_LEN = 100
PAD_VALUE = -1.0


class SinusoidalPositions(nn.Module):
    def __init__(self, d: int, dropout: float, max_len: int = 2600):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        pe = torch.zeros(max_len, d)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(x + self.pe[None, : x.shape[1]])


class ReferenceModel(nn.Module):
    def __init__(self, n_people: int, d: int = 120, heads: int = 1, enc: int = 3, dec: int = 2, ffn: int = 512,
                 dropout: float = 0.1, max_len: int = MAX_LEN):
        super().__init__()
        self.pad_index = n_people
        self.embed = nn.Embedding(n_people + 1, d, padding_idx=n_people)
        self.positions = SinusoidalPositions(d, dropout)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, heads, ffn, dropout, activation=torch.tanh, batch_first=True), enc,
            nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, heads, ffn, dropout, activation=torch.tanh, batch_first=True), dec,
            nn.LayerNorm(d))
        self.out = nn.Linear(d, max_len)

    def forward(self, index, padding):
        src = self.embed(index)
        memory = self.encoder(self.positions(src), src_key_padding_mask=padding)
        h = self.decoder(src, memory, tgt_key_padding_mask=padding, memory_key_padding_mask=padding)
        return self.out(h)


class ReferenceSequences(Dataset):
    """Sequences of lengths 2, 3, ..., max_len again and again, cut from shuffled permutations."""

    def __init__(self, king: np.ndarray, n_sequences: int, max_len: int = MAX_LEN, seed: int = 42):
        k = (king - king.min()) / (king.max() - king.min())  # the paper's min-max to [0, 1]
        self.king = torch.from_numpy(k).float()
        rng = np.random.default_rng(seed)
        lengths = np.resize(np.arange(2, max_len + 1), n_sequences)
        people = np.concatenate([rng.permutation(len(king)) for _ in range(int(lengths.sum() // len(king)) + 2)])
        cuts = np.cumsum(lengths)[:-1]
        self.seqs = np.split(people[: lengths.sum()], cuts)
        self.max_len = max_len

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        idx = torch.from_numpy(self.seqs[i])
        vals = self.king[idx][:, idx]
        return idx, nn.functional.pad(vals, (0, self.max_len - len(idx)), value=PAD_VALUE)


def collate(batch, pad_index: int):
    idx, vals = zip(*batch)
    index = nn.utils.rnn.pad_sequence(idx, batch_first=True, padding_value=pad_index)
    target = nn.utils.rnn.pad_sequence(vals, batch_first=True, padding_value=PAD_VALUE)
    return index, target, index == pad_index


def masked_mse(pred, target):
    keep = target != PAD_VALUE
    return nn.functional.mse_loss(pred[keep], target[keep])


def measure(king: np.ndarray, steps: int = 20, warmup: int = 3, batch_size: int = 150, seed: int = 0) -> dict:
    """Train the reference for ``warmup + steps`` batches; sequences/s over the last ``steps``."""
    torch.manual_seed(seed)
    model = ReferenceModel(len(king)).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    data = ReferenceSequences(king, (steps + warmup) * batch_size)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True,
                        collate_fn=lambda b: collate(b, model.pad_index))
    seen, t0 = 0, None
    for i, (index, target, padding) in enumerate(loader):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = masked_mse(model(index, padding), target)
        loss.backward()
        opt.step()
        if i >= warmup:
            seen += index.shape[0]
    dt = time.perf_counter() - t0
    return {"seq_per_s": seen / dt, "steps": steps, "params": sum(p.numel() for p in model.parameters())}

"""The Seq2KING transformer: people as tokens, attention between them as relatedness.

One readable file, nanoGPT style. A sequence is a set of people; each person is a
token (``kinship`` tokenizer: their KING values against a fixed reference panel,
plus, from genotypes, their genomic relationship with the panel and genotype PCs,
projected to ``d_model``; ``index`` tokenizer: a learned row per person, the
paper's). Pre-LN encoder layers; no positional encoding by default, because a set
of people has no order (the ``paper`` preset keeps sinusoidal positions). Heads
predict the (scaled) kinship of every pair of tokens:

- ``attention`` (default): read from the last layer's own attention logits,
  ``pred_h(i, j) = T_h * logit_h(i, j) + b`` for each head h with a fixed temperature
  ``T_h``, so the kinship the model predicts IS what its last attention ranks people
  by. With ``symmetric_readout`` (default) the keys are the queries and the logits
  are ``-|q_i - q_j|^2 / (2 sqrt(d_head))``: a Gaussian kernel in a learned space,
  so nobody can be a hub and the queries are the model's embedding. The heads' temperatures spread geometrically
  (``readout_temperature`` down to ``readout_temperature / readout_range``): each head
  reads relatedness at its own resolution. Training adds to the pair MSE a row-wise
  KL between each head's attention and softmax(KING / T_h) (:func:`attention_kl`),
  which weighs the top of each row, where attention goes;
- ``pairwise``: symmetric, order-invariant, ``pred_ij = <W h_i, W h_j> / sqrt(d) + b``
  (nothing ties attention to kinship: docs/training.md has its measured figures);
- ``positional``: the paper's ``Linear(d_model -> max_len)``, ``pred_ij = out[i, j]``.

Two attention paths: training uses ``F.scaled_dot_product_attention`` (flash /
memory-efficient kernels where available; the distance kernel as one product of
augmented vectors); analysis asks for ``need_weights`` and gets, per layer, the
softmax weights ``(batch, heads, n, n)`` and the pre-softmax scores (for the
``negate`` inversion). Both paths agree to 1e-5 in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seq2king.errors import InputError
from seq2king.model.kernels import Dropout, Tanh

TOKENIZERS = ("kinship", "index")
HEADS = ("pairwise", "positional", "attention")

@dataclass
class Seq2KingConfig:
    tokenizer: str = "kinship"
    panel_size: int = 256  # kinship tokenizer: KING values against this many landmarks
    num_individuals: int = 0  # index tokenizer: rows of the embedding table
    d_model: int = 128
    depth: int = 4
    heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    activation: str = "gelu"
    positional: bool = False  # sinusoidal positions on the input (paper)
    max_len: int = 128
    head: str = "attention"
    decoder_depth: int = 0  # decoder layers after the encoder (paper: 2)
    pair_dim: int = 64
    readout_temperature: float = 0.1  # attention head: fixed output scale (0 = learned); small = sharp attention
    # attention head: the heads' temperatures spread geometrically from readout_temperature down to
    # readout_temperature / readout_range, so the heads read relatedness at several resolutions (1: alike)
    readout_range: float = 1.0
    # attention head: the last layer's keys ARE its queries and its logits are -|q_i - q_j|^2 / (2 sqrt(d)):
    # a Gaussian kernel in a learned space, symmetric, and nobody can be a hub
    symmetric_readout: bool = False
    per_head_readout: bool = False  # attention head: train every head's logits to predict kinship, not their mean
    num_features: int = 0  # kinship tokenizer: features per token (0: panel_size, KING only)
    # kinship tokenizer: the logits of every layer below the readout get -gamma_{layer,head} * |z_i - z_j|^2,
    # z the token's genotype PCs over feature_scale (mean squared distance 1 between training tokens):
    # attention starts where softmax over the PCs is and learns what it misses
    input_bias: bool | str = False  # false | pcs
    bias_columns: tuple | None = None  # set from the data: the feature columns the bias reads
    feature_scale: float = 1.0
    bias_slope: float = 0.0  # data: least-squares slope of scaled KING on |z_i - z_j|^2 (training pairs), >= 0
    # input_bias: after each layer below the readout, z_i <- (z_i + sum_j p_ij z_j) / 2, p_i a softmax over
    # minus the squared distance to the others in the sequence at the temperature that gives row i
    # ``denoise_entropy`` nats (t-SNE's perplexity calibration): each person's features pooled with their
    # input neighbours (contextual denoising), so the next layer's bias sees the pooled features
    input_denoise: bool = False
    denoise_entropy: float = 1.5
    # masked-token reconstruction (the module's ``reconstruction`` weight): in training a share ``mask_ratio`` of
    # each sequence's people have these feature columns (their genotype PCs, set from the data) hidden, from
    # their token and from the input bias, and the readout's input predicts them: the within-continent PCs are
    # not recoverable from a person's own KING / GRM columns (ridge test R2 0.48-0.54, docs/regimes.md), so
    # the layers must learn to borrow them from the right people of the set
    reconstruct_columns: tuple | None = None
    mask_ratio: float = 0.25

    def bias_block(self) -> str | None:
        """The token features ``input_bias`` reads (``"pcs"``), or None."""
        return None if self.input_bias in (False, None, "none") else str(self.input_bias)

    def temperatures(self) -> list[float] | None:
        """The attention head's output scale of each head; None when it is learned."""
        t, h = float(self.readout_temperature), self.heads
        if t <= 0:
            return None
        return [t / float(self.readout_range) ** (i / (h - 1) if h > 1 else 0.0) for i in range(h)]

    def validate(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise InputError(f"model.tokenizer={self.tokenizer!r}: choose one of {', '.join(TOKENIZERS)}")
        if self.head not in HEADS:
            raise InputError(f"model.head={self.head!r}: choose one of {', '.join(HEADS)}")
        if self.readout_range < 1:
            raise InputError(f"model.readout_range={self.readout_range}: must be at least 1 (1: every head alike)")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"model.activation={self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.heads < 1 or self.d_model % self.heads:
            raise InputError(f"model.heads={self.heads} does not divide model.d_model={self.d_model}")
        if self.depth < 1:
            raise InputError(f"model.depth={self.depth}: need at least one encoder layer")
        if not 0 <= self.dropout < 1:
            raise InputError(f"model.dropout={self.dropout}: must be in [0, 1)")
        if self.tokenizer == "index" and self.num_individuals < 1:
            raise InputError("model.tokenizer=index needs num_individuals (set from the data)")
        if not self.denoise_entropy > 0:
            raise InputError(f"model.denoise_entropy={self.denoise_entropy}: must be positive (nats)")
        if self.input_bias not in (False, None, "none", "pcs"):
            raise InputError(f"model.input_bias={self.input_bias!r}: choose false or pcs")
        if not 0 < self.mask_ratio < 1:
            raise InputError(f"model.mask_ratio={self.mask_ratio}: must be in (0, 1)")
        if self.tokenizer == "kinship" and self.panel_size < 1:
            raise InputError(f"model.panel_size={self.panel_size}: must be positive")


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": Tanh, "silu": nn.SiLU}


class Attention(nn.Module):
    """Multi-head attention with a padding mask; optionally returns its weights.

    ``tied`` (the attention head's readout): keys are the queries and the logits are
    ``-|q_i - q_j|^2 / (2 sqrt(d_head))``, a Gaussian kernel. A readout that predicts
    kinship from untied, symmetrised logits leaves their antisymmetric part free, and
    ``u_j - u_i`` in it makes person j a hub everyone attends to; a symmetric bilinear
    form can still hold ``u_i + u_j``; a distance can do neither: each person attends to
    the people nearest to them in query space, and the model's embedding (the queries)
    is the space its attention ranks people in.
    """

    def __init__(self, cfg: Seq2KingConfig, tied: bool = False):
        super().__init__()
        self.heads = cfg.heads
        self.tied = tied
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        if tied:
            self.v = nn.Linear(cfg.d_model, cfg.d_model)
        else:
            self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.attn_drop = Dropout(cfg.dropout)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, d) -> (B, heads, n, d_head)."""
        b, n, d = x.shape
        return self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def _qk(self, x, ctx):
        """Queries and keys, as one product of them gives the logits (times 1/sqrt(d_head))."""
        q = self.queries(x)
        if self.tied:
            assert ctx is x, "tied queries and keys need self-attention"
            # q_i.q_j - |q_i|^2/2 - |q_j|^2/2 = -|q_i - q_j|^2 / 2, as one product of augmented vectors
            half = -0.5 * q.square().sum(-1, keepdim=True)
            one = torch.ones_like(half)
            return torch.cat([q, half, one], -1), torch.cat([q, one, half], -1)
        b, m, d = ctx.shape
        return q, self.kv(ctx)[..., :d].view(b, m, self.heads, d // self.heads).transpose(1, 2)

    def _v(self, ctx):
        b, m, d = ctx.shape
        v = self.v(ctx) if self.tied else self.kv(ctx)[..., d:]
        return v.view(b, m, self.heads, d // self.heads).transpose(1, 2)

    def logits(self, x, mask, context=None, bias=None) -> torch.Tensor:
        """The pre-softmax scores alone, (B, heads, n, n_ctx), padding keys at -inf; ``bias`` is added."""
        q, k = self._qk(x, x if context is None else context)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(x.shape[-1] // self.heads)
        if bias is not None:
            scores = scores + bias
        return scores.masked_fill(~mask[:, None, None, :], float("-inf"))

    def forward(self, x, mask, context=None, need_weights=False, bias=None):
        """x: (B, n, d); mask: (B, n_ctx) True for real tokens; context defaults to x;
        ``bias`` (B, heads, n, n_ctx): added to the logits."""
        b, n, d = x.shape
        ctx = x if context is None else context
        v = self._v(ctx)
        # SDPA's own dropout draws its mask with the CPU's slow bernoulli: there, the explicit path
        cpu_dropout = self.training and self.dropout > 0 and x.device.type == "cpu"
        if not need_weights and not cpu_dropout:
            q, k = self._qk(x, ctx)
            attn_mask = (mask[:, None, None, :] if bias is None
                         else bias.masked_fill(~mask[:, None, None, :], float("-inf")))
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
                scale=1 / math.sqrt(d // self.heads))
            weights = scores = None
        else:
            # The explicit path: same numbers, plus what analysis reads.
            scores = self.logits(x, mask, context, bias=bias)
            weights = scores.softmax(dim=-1)
            y = self.attn_drop(weights) @ v
            if not need_weights:
                weights = scores = None
        y = y.transpose(1, 2).reshape(b, n, d)
        return self.proj(y), weights, scores


class MLP(nn.Module):
    def __init__(self, cfg: Seq2KingConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ffn_dim), ACTIVATIONS[cfg.activation](),
            Dropout(cfg.dropout), nn.Linear(cfg.ffn_dim, cfg.d_model))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """Pre-LN layer: self-attention (and cross-attention in a decoder), then MLP."""

    def __init__(self, cfg: Seq2KingConfig, cross: bool = False, tied: bool = False):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, tied=tied)
        self.cross = Attention(cfg) if cross else None
        self.ln_cross = nn.LayerNorm(cfg.d_model) if cross else None
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x, mask, memory=None, need_weights=False, bias=None):
        a, w, s = self.attn(self.ln1(x), mask, need_weights=need_weights, bias=bias)
        x = self.drop.add(x, a)
        if self.cross is not None:
            c, _, _ = self.cross(self.ln_cross(x), mask, context=memory, need_weights=need_weights)
            x = self.drop.add(x, c)
        x = self.drop.add(x, self.mlp(self.ln2(x)))
        return x, w, s


def sinusoidal(n: int, d: int, device=None) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)
    angle = pos / torch.pow(10000.0, i / d)
    pe = torch.zeros(n, d, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe


class Seq2King(nn.Module):
    """Tokenizer -> encoder (-> decoder) -> pair head.

    forward(batch) takes ``index`` (B, n) long, ``features`` (B, n, panel) float and
    ``mask`` (B, n) bool, and returns predictions (B, n, n). With
    ``need_weights=True`` it also returns per-layer attention weights and scores,
    each a list of (B, heads, n, n) tensors, and the final embeddings (B, n, d).
    """

    def __init__(self, cfg: Seq2KingConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        if cfg.tokenizer == "kinship":
            self.tokenizer = nn.Linear(cfg.num_features or cfg.panel_size, cfg.d_model)
        else:
            self.tokenizer = nn.Embedding(cfg.num_individuals + 1, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        tie_last = cfg.head == "attention" and cfg.symmetric_readout and cfg.decoder_depth == 0
        self.encoder = nn.ModuleList(Block(cfg, tied=tie_last and i == cfg.depth - 1) for i in range(cfg.depth))
        self.decoder = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.decoder_depth))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.bias_log_gamma = None
        if cfg.bias_block() and cfg.tokenizer == "kinship":
            # log gamma per head of every self-attention layer, starting at slope / T_h (KING's least-squares
            # line on the PCs' distance); the attention head's readout row stays unused (a bias there cost the
            # readout its KING skill: docs/training.md), kept so that checkpoints keep their shape
            temps = torch.tensor(cfg.temperatures() or [1.0] * cfg.heads)
            start = torch.log(max(cfg.bias_slope, 1e-3) / temps)
            self.bias_log_gamma = nn.Parameter(start.repeat(cfg.depth + cfg.decoder_depth, 1))
        if cfg.head == "pairwise":
            self.pair = nn.Linear(cfg.d_model, cfg.pair_dim)
            self.pair_bias = nn.Parameter(torch.zeros(()))
        elif cfg.head == "attention":
            # With a fixed small scale the logits must be large to predict kinship,
            # so attention concentrates on the most related people.
            temps = cfg.temperatures()
            if temps is not None:  # (H,): set by the config, so not stored in checkpoints
                self.register_buffer("pair_scale", torch.tensor(temps), persistent=False)
            else:
                self.pair_scale = nn.Parameter(torch.ones(cfg.heads))
            self.pair_bias = nn.Parameter(torch.zeros(()))
        else:
            self.out = nn.Linear(cfg.d_model, cfg.max_len)
        if cfg.reconstruct_columns is not None:
            lo, hi = cfg.reconstruct_columns
            self.mask_token = nn.Parameter(torch.zeros(cfg.d_model))  # added to a hidden person's token
            self.reconstruct = nn.Linear(cfg.d_model, hi - lo)
        self.apply(self._init)
        if cfg.reconstruct_columns is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def init_distance_readout(self, top: float, spread: float) -> None:
        """Start a distance readout where its targets are (a data-dependent init).

        The prediction at distance 0 (the bias) starts at ``top``, the closest training
        pairs; the last queries' weights are scaled so that two people's initial
        predictions differ by about ``spread``: with unit-variance inputs, ``E|q_i - q_j|^2
        = 2 d_head d_model std^2``, times ``readout_temperature / (2 sqrt(d_head))``.
        Adam moves each weight by about the learning rate per step, so from the default
        small init it takes hundreds of steps just to reach the targets' scale.
        """
        cfg = self.cfg
        dh = cfg.d_model // cfg.heads
        weight = (self.decoder or self.encoder)[-1].attn.q.weight  # (d_model, d_model), head h: rows h*dh..
        with torch.no_grad():
            self.pair_bias.fill_(top)
            for h, scale in enumerate(cfg.temperatures() or [1.0] * cfg.heads):
                std = math.sqrt(max(spread, 1e-3) * math.sqrt(dh) / (scale * dh * cfg.d_model))
                nn.init.normal_(weight[h * dh:(h + 1) * dh], std=std)

    def embed(self, batch) -> torch.Tensor:
        if self.cfg.tokenizer == "kinship":
            x = self.tokenizer(batch["features"])
        else:
            idx = batch["index"].clamp_min(0)
            x = self.tokenizer(idx)
        if self.cfg.positional:
            x = x + sinusoidal(x.shape[1], x.shape[2], x.device)
        if batch.get("hidden") is not None:  # masked-token reconstruction: these people's PCs are hidden
            x = x + batch["hidden"][..., None].to(x.dtype) * self.mask_token
        return self.drop(x)

    def input_features(self, batch) -> torch.Tensor | None:
        """``(B, n, F)`` the token features over ``sqrt(feature_scale)`` (input_bias), else None."""
        if self.bias_log_gamma is None:
            return None
        f = batch["features"].float()
        if self.cfg.bias_columns is not None:
            f = f[..., self.cfg.bias_columns[0]:self.cfg.bias_columns[1]]
        return f / math.sqrt(self.cfg.feature_scale)

    @staticmethod
    def input_distance(z: torch.Tensor) -> torch.Tensor:
        """``(B, n, n)`` squared distances between the rows of ``z`` (B, n, F), 0 on the diagonal."""
        sq = z.square().sum(-1)
        d2 = (sq[:, :, None] + sq[:, None, :] - 2 * z @ z.transpose(1, 2)).clamp_min(0.0)
        eye = torch.eye(d2.shape[-1], dtype=torch.bool, device=d2.device)
        return d2.masked_fill(eye, 0.0)

    def forward(self, batch, need_weights: bool = False, per_head: bool = False, reconstruct: bool = False):
        """Predicted scaled kinship ``(B, n, n)`` (``per_head``: ``(B, H, n, n)``, attention head); with
        ``need_weights`` also ``{"weights", "scores", "embeddings"}`` for the analysis; with ``reconstruct``
        (masked-token reconstruction) the pair ``(prediction, (B, n, P) the reconstructed PC columns)``.
        ``batch["hidden"]`` (B, n), optional: people whose PC columns are hidden (already zeroed in
        ``features``): a mask token is added to their token and no input bias involves them."""
        mask = batch["mask"]
        x, weights, scores, readout_input = self._layers(self.embed(batch), mask, self.input_features(batch),
                                                         need_weights, batch.get("hidden"))
        pred = self._predict(x, scores, mask, per_head)
        if reconstruct:
            return pred, self.reconstruct(readout_input if readout_input is not None else self.ln_f(x))
        if not need_weights:
            return pred
        return pred, {"weights": weights, "scores": scores, "embeddings": self._embedding(x, readout_input)}

    def _layers(self, x, mask, z, need_weights: bool, hidden=None):
        """Run the encoder (and decoder) layers: ``(x, weights, scores, readout input)``.

        Below the attention head's readout each layer's logits get the input bias ``-gamma |z_i - z_j|^2``,
        and with ``input_denoise`` ``z`` is pooled with each person's input neighbours for the next layer. The
        readout layer contributes its logits; without ``need_weights`` nothing after them is computed.
        ``hidden`` people (masked-token reconstruction) take no part in the bias: no pair with one of them is
        biased and nobody's features are pooled with theirs.
        """
        blocks = [*self.encoder, *self.decoder]
        reads_logits = self.cfg.head == "attention"
        d2 = None if z is None else self.input_distance(z)  # again only when pooling changes z
        seen = mask if hidden is None else mask & ~hidden
        unbiased = None if hidden is None else ~(seen[:, :, None] & seen[:, None, :])
        weights, scores, memory, readout_input = [], [], None, None
        for i, block in enumerate(blocks):
            if i == len(self.encoder) and self.decoder:
                memory = x  # the decoder's cross-attention reads the encoder's output
            last = i == len(blocks) - 1
            bias = None
            if z is not None and not (last and reads_logits):
                near = d2 if unbiased is None else d2.masked_fill(unbiased, 0.0)
                bias = -self.bias_log_gamma[i].exp()[None, :, None, None] * near[:, None]
                if self.cfg.input_denoise and not last and (i + 2 < len(blocks) or not reads_logits):
                    pool = calibrated_pool(d2, seen, self.cfg.denoise_entropy)  # a lone person keeps z
                    z = z + (pool @ z - pool.sum(-1, keepdim=True) * z) / 2
                    d2 = self.input_distance(z)
            if last and reads_logits:
                readout_input = block.ln1(x)  # what the readout's queries and keys see
                if not need_weights:  # the head reads these logits alone: skip their softmax, values, MLP
                    scores.append(block.attn.logits(readout_input, mask))
                    break
            x, w, sc = block(x, mask, memory=memory, need_weights=need_weights, bias=bias)
            weights.append(w)
            scores.append(sc)
        return x, weights, scores, readout_input

    def _predict(self, x, scores, mask, per_head: bool) -> torch.Tensor:
        if self.cfg.head == "attention":
            logits = scores[-1].masked_fill(~mask[:, None, None, :], 0.0)  # (B, H, n, n)
            pred = self.pair_scale[:, None, None] * (logits + logits.transpose(-1, -2)) / 2 + self.pair_bias
            return pred if per_head else pred.mean(1)
        h = self.ln_f(x)
        n = h.shape[1]
        if self.cfg.head == "pairwise":
            w = self.pair(h)
            return w @ w.transpose(1, 2) / math.sqrt(w.shape[-1]) + self.pair_bias
        if n > self.cfg.max_len:
            raise InputError(f"sequence of {n} people is longer than model.max_len={self.cfg.max_len}")
        return self.out(h)[:, :, :n]

    def _embedding(self, x, readout_input) -> torch.Tensor:
        """What the prediction is made from, ``(B, n, d)``. The symmetric readout: its queries, all heads, each
        times ``sqrt(T_h)`` (the space its attention ranks people in: squared distances are then, up to a
        constant, the gap between the closest-pair level and the heads' mean predicted kinship); another
        attention readout: its normalised input; other heads: the final output."""
        if self.cfg.head != "attention":
            return self.ln_f(x)
        readout = (self.decoder or self.encoder)[-1].attn
        if not readout.tied:
            return readout_input
        q = readout.queries(readout_input) * self.pair_scale.detach().abs().sqrt()[:, None, None]  # (B, H, n, dh)
        return q.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


@torch.no_grad()
def calibrated_pool(d2: torch.Tensor, mask: torch.Tensor, entropy: float, steps: int = 16) -> torch.Tensor:
    """``(B, n, n)`` row-stochastic weights ``softmax_j(-beta_i d2_ij)`` over the other real people of the
    sequence, each row's ``beta_i`` found by bisection on ``log beta`` in [-6, 10] so that its entropy is
    ``entropy`` nats (t-SNE's perplexity calibration; 16 halvings leave ``log beta`` within 2.5e-4; ``d2``
    is in units of the mean squared distance between training tokens, so beta from 0.0025 to 22,000 spans
    uniform to nearest-neighbour-only; rows with fewer others than ``exp(entropy)`` come out uniform).
    A row with no other real person is all zero."""
    n = d2.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=d2.device)
    drop = eye[None] | ~mask[:, None, :]
    d2 = d2.float().masked_fill(drop, 0.0)
    lo = torch.full(d2.shape[:2], -6.0, device=d2.device)
    hi = torch.full(d2.shape[:2], 10.0, device=d2.device)
    for _ in range(steps):
        mid = (lo + hi) / 2
        beta = mid.exp()[..., None]
        logits = (-beta * d2).masked_fill(drop, float("-inf"))
        log_z = logits.logsumexp(-1, keepdim=True)
        p = (logits - log_z).exp()
        h = (log_z + beta * (p * d2).sum(-1, keepdim=True)).squeeze(-1)  # -sum p log p
        sharp = h < entropy  # too sharp: a smaller beta
        hi = torch.where(sharp, mid, hi)
        lo = torch.where(sharp, lo, mid)
    return (-((lo + hi) / 2).exp()[..., None] * d2).masked_fill(drop, float("-inf")).softmax(-1).nan_to_num(0.0)

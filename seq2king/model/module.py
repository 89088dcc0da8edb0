"""Lightning wrapper: loss, baselines, optimiser and schedule around :class:`Seq2King`."""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
import torch

from seq2king.errors import InputError
from seq2king.model.losses import attention_kl, masked_pair_mse
from seq2king.model.transformer import Seq2King, Seq2KingConfig

log = logging.getLogger(__name__)


# options the regimes showed do not help, taken out (docs/training.md has the measurements); a checkpoint
# or config that sets them to the one value they now always have still loads
REMOVED = {"kernel": ("distance", "the symmetric readout's logits are always the distance kernel"),
           "signed_readout": (None, "it only applied to model.kernel=dot"),
           "bias_readout": (False, "a bias in the readout cost its KING skill"),
           "bias_scale": (1.0, "a broader start did not help")}


def _without_removed(cfg: dict) -> dict:
    for key, (kept, why) in REMOVED.items():
        if key in cfg:
            value = cfg.pop(key)
            if kept is not None and value != kept:
                raise InputError(f"model.{key}={value!r}: this option was removed ({why}; docs/training.md); "
                                 f"leave it out (it is always {kept!r} now)")
    if cfg.get("input_bias") in (True, "inputs"):
        raise InputError(f"model.input_bias={cfg['input_bias']!r}: the bias on all token features was removed "
                         "(it cost the default cohort 0.990 -> 0.965; docs/training.md); use pcs or false")
    return cfg


class Seq2KingModule(pl.LightningModule):
    """Trains :class:`Seq2King` to predict scaled KING between the people of a sequence.

    Hyper-parameters are plain dicts (saved with ``save_hyperparameters``), so a
    checkpoint loads with ``torch.load(..., weights_only=True)``.

    Logged: ``train/loss``, ``val/loss``, ``val/baseline_loss`` (predicting the
    training mean, which scaled targets make 0 for ``standard`` scaling), and
    ``val/skill`` = 1 - loss / baseline_loss (0: no better than the mean; 1: exact).
    """

    def __init__(self, optimizer: dict | None = None, scheduler: dict | None = None,
                 compile: bool = False, num_individuals: int = 0, target_mean: float = 0.0,
                 target_top: float = 0.0, num_features: int = 0, attention_loss: float = 0.0,
                 input_lines: dict | None = None, reconstruction: float = 0.0, **model):
        """``model``: the :class:`Seq2KingConfig` fields (tokenizer, d_model, depth, heads, ...)."""
        super().__init__()
        self.save_hyperparameters()
        self.cfg = self._config(model, num_individuals, num_features)
        self._input_line(self.cfg, input_lines or {})
        self.reconstruction = self._reconstruct_line(self.cfg, reconstruction, input_lines or {})
        self.net = Seq2King(self.cfg)
        if self.cfg.head == "attention" and self.cfg.symmetric_readout:
            self.net.init_distance_readout(target_top, target_top - target_mean)
        self.optim_cfg = {"name": "adamw", "lr": 3e-4, "weight_decay": 0.01, "betas": (0.9, 0.98),
                          **(optimizer or {})}
        self.sched_cfg = {"name": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.05, **(scheduler or {})}
        self.target_mean = target_mean
        # the attention head with fixed temperatures only: other heads' attention is not read as kinship
        self.attention_loss = float(attention_loss) if self.cfg.head == "attention" and self.cfg.temperatures() else 0.0
        # Not a registered submodule: the compiled wrapper shares self.net's weights, and
        # registering it would store every weight twice (``_compiled._orig_mod.*``) in the
        # checkpoint, which then would not load into an uncompiled model.
        object.__setattr__(self, "_compiled", torch.compile(self.net) if compile else None)

    @staticmethod
    def _input_line(cfg: Seq2KingConfig, lines: dict) -> dict | None:
        """Set ``cfg``'s input-bias columns, scale and slope from the data's fitted lines; the line used."""
        want = cfg.bias_block()
        if want is None:
            cfg.input_bias = False
            return None
        line = lines.get(want) if cfg.tokenizer == "kinship" else None
        if line is None:
            # index tokens, or no such features (pcs from a KING matrix alone, data.genotype_pcs=0): no bias
            if lines:
                log.info("model.input_bias=%s: the tokens have no %s columns; no input bias", cfg.input_bias, want)
            cfg.input_bias = False
            return None
        cfg.bias_columns = tuple(int(c) for c in line["columns"])
        cfg.feature_scale, cfg.bias_slope = float(line["scale"]), float(line["slope"])
        return line

    @staticmethod
    def _reconstruction_weight(weight) -> float:
        if float(weight) < 0:
            raise InputError(f"model.reconstruction={weight}: must be 0 (off) or more")
        return float(weight)

    @classmethod
    def _reconstruct_line(cls, cfg: Seq2KingConfig, weight: float, lines: dict) -> float:
        """Masked-token reconstruction: set ``cfg``'s hidden columns (the tokens' genotype PCs); its weight."""
        if not cls._reconstruction_weight(weight):
            return 0.0
        if cfg.tokenizer != "kinship" or "pcs" not in lines:
            raise InputError("model.reconstruction needs genotype PCs in the tokens (model.tokenizer=kinship, "
                             "data.genotype_features=true, data.genotype_pcs > 0)")
        cfg.reconstruct_columns = tuple(int(c) for c in lines["pcs"]["columns"])
        return float(weight)

    @staticmethod
    def _config(model: dict, num_individuals: int, num_features: int) -> Seq2KingConfig:
        """The network's config from the model keys and what the data sets."""
        cfg = _without_removed(dict(model))
        if cfg.get("tokenizer") == "index":
            cfg["num_individuals"] = num_individuals
        else:
            cfg["num_features"] = num_features
        try:
            return Seq2KingConfig(**cfg)
        except TypeError as e:
            raise InputError(f"model config: {e}") from None

    @classmethod
    def check_config(cls, optimizer=None, scheduler=None, compile=False, attention_loss=0.0, reconstruction=0.0,
                     **model) -> None:
        """Check the model's keys and values before any data is made (simulating or reading
        it can take minutes): the error a bad value would give later, now."""
        model = {k: v for k, v in model.items() if not k.startswith("_")}  # Hydra's _target_, _convert_
        cls._config(model, num_individuals=1, num_features=0).validate()
        cls._reconstruction_weight(reconstruction)

    def forward(self, batch, need_weights: bool = False):
        if self._compiled is not None and not need_weights:
            return self._compiled(batch)
        return self.net(batch, need_weights=need_weights)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "datasets"):
            dm.datasets["train"].set_epoch(self.current_epoch)

    def _hide(self, batch) -> tuple[dict, torch.Tensor]:
        """Masked-token reconstruction: hide the PC columns of a random share of each sequence's people (zero:
        the PCs are centred on training people); the batch the network sees and the hidden columns' values."""
        lo, hi = self.cfg.reconstruct_columns
        mask = batch["mask"]
        hidden = (torch.rand(mask.shape, device=mask.device) < self.cfg.mask_ratio) & mask
        features = batch["features"].clone()
        truth = features[..., lo:hi].clone()
        features[..., lo:hi] = features[..., lo:hi].masked_fill(hidden[..., None], 0.0)
        return {**batch, "features": features, "hidden": hidden}, truth

    def _step(self, batch, stage: str):
        bs = batch["mask"].shape[0]
        hiding = stage == "train" and self.reconstruction > 0
        if hiding:
            batch, truth = self._hide(batch)
        per_head = stage == "train" and self.cfg.head == "attention" and (self.cfg.per_head_readout
                                                                           or self.attention_loss)
        if per_head or hiding:
            out = self.net(batch, per_head=per_head, reconstruct=hiding)
            pred, recon = out if hiding else (out, None)
            # per_head_readout: every head's logits predict kinship, so each head's attention is meaningful
            head_pred = pred.mean(1) if per_head and not self.cfg.per_head_readout else pred
            loss = masked_pair_mse(head_pred, batch["target"], batch["mask"])
            if per_head and self.attention_loss:
                # weighted by T_h / T_max: in logit space the KL's gradient does not depend on T and
                # the MSE's shrinks with it, so this keeps each head's balance of the two alike
                t = self.net.pair_scale
                kl = attention_kl(pred, batch["target"], batch["mask"], t, weight=t / t.max())
                self.log("train/attention_kl", kl, batch_size=bs)
                loss = loss + self.attention_loss * kl
            if hiding:
                hidden = batch["hidden"]
                err = (recon - truth).square().mean(-1)[hidden]
                rec = err.mean() if err.numel() else recon.sum() * 0.0
                self.log("train/reconstruction", rec, batch_size=bs)
                loss = loss + self.reconstruction * rec
        else:
            pred = self(batch)
            loss = masked_pair_mse(pred, batch["target"], batch["mask"])
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=bs, sync_dist=stage != "train")
        if stage != "train":
            base = masked_pair_mse(torch.full_like(pred, self.target_mean), batch["target"], batch["mask"])
            self.log(f"{stage}/baseline_loss", base, batch_size=bs, sync_dist=True)
            self.log(f"{stage}/skill", 1 - loss / base.clamp_min(1e-12), batch_size=bs, sync_dist=True,
                     prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        o = self.optim_cfg
        decay = [p for n, p in self.net.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.net.named_parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
        if o["name"] == "adamw":
            opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]))
        elif o["name"] == "adam":  # the paper's
            opt = torch.optim.Adam(self.net.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
        else:
            raise InputError(f"optimizer.name={o['name']!r}: choose adamw or adam")
        s = self.sched_cfg
        if s["name"] in (None, "none", "constant"):
            return opt
        if s["name"] != "cosine":
            raise InputError(f"scheduler.name={s['name']!r}: choose cosine or none")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(int(s["warmup_steps"]), total // 2)
        floor = float(s["min_lr_ratio"])

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

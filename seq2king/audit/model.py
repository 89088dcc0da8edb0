"""SNP -> trait models for the audit: logistic, MLP and the published 1-D CNN.

Every network is ``features`` (SNPs -> last hidden layer) then a linear ``head`` to one
logit. Covariates (``pcs`` and ``seq2king`` corrections) add a linear term to the logit,
as covariates do in a GWAS. The ``adversarial`` correction puts an ancestry adversary
on the last hidden layer behind gradient reversal (Ganin & Lempitsky 2015): it learns
to predict the PCs, and the network learns to make that impossible.

The CNN is Dagasso et al. (2025)'s: Conv1D(16, 31) -> BatchNorm -> MaxPool(6) ->
Conv1D(32, 15, L2 0.01) -> BatchNorm -> MaxPool(3) -> Flatten -> Dense 512 -> 256 ->
Dropout 0.2 -> 128 -> 1, Adam 1e-3 with reduce-on-plateau (Keras defaults: valid
padding, ReLU activations).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAUROC

from seq2king.audit.data import CORRECTIONS
from seq2king.errors import InputError

ARCHS = ("logistic", "mlp", "cnn")


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient times ``-scale`` backward."""
    return _Reverse.apply(x, scale)


class PublishedCNN(nn.Module):
    def __init__(self, num_snps: int, dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, 16, 31), nn.ReLU(), nn.BatchNorm1d(16), nn.MaxPool1d(6),
            nn.Conv1d(16, 32, 15), nn.ReLU(), nn.BatchNorm1d(32), nn.MaxPool1d(3), nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(2, 1, num_snps)).shape[1]
        self.dense = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                   nn.Dropout(dropout), nn.Linear(256, 128), nn.ReLU())
        self.out_dim = 128
        self.l2_weight = self.conv[4].weight  # Keras kernel_regularizer=l2(0.01) on the second convolution

    def forward(self, x):
        return self.dense(self.conv(x[:, None, :]))


def build_features(arch: str, num_snps: int, hidden: int, dropout: float) -> nn.Module:
    if arch == "cnn":
        return PublishedCNN(num_snps, dropout)
    if arch == "mlp":
        net = nn.Sequential(nn.Linear(num_snps, hidden), nn.ReLU(), nn.Dropout(dropout),
                            nn.Linear(hidden, hidden // 4), nn.ReLU())
        net.out_dim = hidden // 4
        return net
    if arch == "logistic":  # the logit itself is the last "hidden layer"
        net = nn.Linear(num_snps, 1)
        net.out_dim = 1
        return net
    raise ValueError(arch)


class AuditModule(pl.LightningModule):
    def __init__(self, num_snps: int, num_covariates: int = 0, num_pcs: int = 10, arch: str = "cnn",
                 correction: str = "none", hidden: int = 256, dropout: float = 0.2, l2: float = 0.01,
                 adversary_weight: float = 1.0, lr: float = 1e-3, weight_decay: float = 0.0, l1: float = 0.0,
                 plateau_patience: int = 5, covariate_init: list | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.check_config(arch=arch, correction=correction)
        self.features = build_features(arch, num_snps, hidden, dropout)
        self.head = nn.Identity() if arch == "logistic" else nn.Linear(self.features.out_dim, 1)
        self.cov_head = nn.Linear(num_covariates, 1, bias=False) if num_covariates else None
        self.adversary = (nn.Sequential(nn.Linear(self.features.out_dim, 64), nn.ReLU(), nn.Linear(64, num_pcs))
                          if correction == "adversarial" else None)
        if self.cov_head is not None and covariate_init:
            # start from the covariates-only fit (a GWAS null model): the SNPs then learn what the
            # covariates leave, instead of racing them to the population difference
            with torch.no_grad():
                self.cov_head.weight.copy_(torch.tensor(covariate_init[:-1], dtype=torch.float32)[None])
                (self.features if arch == "logistic" else self.head).bias.fill_(float(covariate_init[-1]))
        self.auroc = nn.ModuleDict({s: BinaryAUROC() for s in ("train_", "val", "test")})
        self.test_scores: dict[int, float] = {}

    @classmethod
    def check_config(cls, arch: str = "cnn", correction: str = "none", **_) -> None:
        if arch not in ARCHS:
            raise InputError(f"model.arch={arch!r}: choose one of {', '.join(ARCHS)}")
        if correction not in CORRECTIONS:
            raise InputError(f"audit.correction={correction!r}: choose one of {', '.join(CORRECTIONS)}")

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None, return_hidden: bool = False):
        h = self.features(x)
        logit = self.head(h)[:, 0]
        if self.cov_head is not None and covariates is not None and covariates.shape[1]:
            logit = logit + self.cov_head(covariates)[:, 0]
        return (logit, h) if return_hidden else logit

    def _step(self, batch, stage: str):
        logit, h = self(batch["x"], batch["covariates"], return_hidden=True)
        y = batch["y"]
        # validation of the balanced correction weighs every (population, phenotype) cell the same
        weight = batch["weight"] if stage == "val" else None
        loss = F.binary_cross_entropy_with_logits(logit, y, weight=weight)
        total = loss
        if self.hparams.arch == "cnn" and self.hparams.l2:
            total = total + self.hparams.l2 * self.features.l2_weight.pow(2).sum()
        if self.hparams.l1 and self.hparams.arch != "cnn":  # a sparse first layer: few SNPs carry the signal
            first = self.features.weight if self.hparams.arch == "logistic" else self.features[0].weight
            total = total + self.hparams.l1 * first.abs().sum()
        if self.adversary is not None:
            adv = F.mse_loss(self.adversary(grad_reverse(h, self.hparams.adversary_weight)), batch["pcs"])
            total = total + adv
            self.log(f"{stage}/adversary_loss", adv, on_epoch=True, on_step=False, batch_size=len(y))
        name = "train_" if stage == "train" else stage
        self.auroc[name].update(logit.detach(), y.long())
        self.log(f"{stage}/loss", loss, on_epoch=True, on_step=False, prog_bar=stage != "train", batch_size=len(y))
        self.log(f"{stage}/auroc", self.auroc[name], on_epoch=True, on_step=False, prog_bar=stage == "val",
                 batch_size=len(y))
        return total, logit

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_scores = {}

    def test_step(self, batch, batch_idx):
        _, logit = self._step(batch, "test")
        self.test_scores.update(zip(batch["index"].tolist(), torch.sigmoid(logit).tolist()))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=self.hparams.plateau_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}

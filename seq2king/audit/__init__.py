"""The confounding audit: does a SNP -> trait model learn ancestry instead of biology?

A second task in the same Lightning + Hydra framework (``python train.py experiment=audit``):
:mod:`~seq2king.audit.scenario` (the embedded confounded cohort), :mod:`~seq2king.audit.data`
(genotypes, phenotype, split, PCs and the corrections' inputs), :mod:`~seq2king.audit.model`
(logistic, MLP and the published CNN, with covariates or an adversary),
:mod:`~seq2king.audit.ancestry` (seq2king embeddings as ancestry covariates),
:mod:`~seq2king.audit.explain` (Captum importances) and :mod:`~seq2king.audit.report`
(``analysis/audit.json``).
"""

from seq2king.audit.data import AuditDataModule
from seq2king.audit.model import AuditModule

__all__ = ["AuditDataModule", "AuditModule"]

"""Genotypes, a binary phenotype and populations for the audit, with each correction's inputs.

Everything learnt from people is learnt from training people only: allele frequencies
(scaling), the genotype PCs (training people scored out of fold, everyone else
projected), the residualisation of SNPs on PCs, the seq2king model behind the
``seq2king`` covariates. The split is by individual, stratified by phenotype and
population so that every split keeps the cohort's case/population mix.

Corrections (``audit.correction``):

- ``none``: SNPs only;
- ``pcs``: genotype PCs as covariates (a linear term beside the network's output);
- ``residualize``: each standardised SNP regressed on the PCs (fitted on training
  people), the model sees the residuals;
- ``adversarial``: SNPs only, and an adversary predicting the PCs from the network's
  last hidden layer behind gradient reversal (:class:`~seq2king.audit.model.AuditModule`);
- ``balanced``: training batches drawn so that every (population, case/control) cell
  weighs the same: population no longer predicts the phenotype in what the model sees;
- ``seq2king``: a trained seq2king model's embeddings of each person (reduced to
  ``ancestry_components`` PCs fitted on training people) as covariates
  (:mod:`~seq2king.audit.ancestry`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from seq2king.audit.ancestry import seq2king_covariates
from seq2king.audit.scenario import load_scenario
from seq2king.data.cohort import cache_root, content_digests, genotype_files
from seq2king.errors import InputError
from seq2king.fileio import write_json
from seq2king.genetics.genotypes import BedSource, PgenSource, VcfSource
from seq2king.genetics.labels import read_labels
from seq2king.genetics.pca import allele_frequencies, held_out_pcs, standardise
from seq2king.genetics.traits import read_phenotype

log = logging.getLogger(__name__)

CORRECTIONS = ("none", "pcs", "residualize", "adversarial", "balanced", "seq2king")
SOURCES = {"simulated": None, "plink": "bfile", "pgen": "pfile", "vcf": "vcf"}


def binary_phenotype(values: np.ndarray, path: str) -> np.ndarray:
    """0/1 with NaN kept; plink's 1 = control, 2 = case accepted too."""
    seen = set(np.unique(values[~np.isnan(values)]).tolist())
    if seen <= {0.0, 1.0}:
        return values
    if seen <= {1.0, 2.0}:
        return values - 1
    shown = ", ".join(f"{v:g}" for v in sorted(seen)[:5])
    raise InputError(f"{path}: the audit needs a binary phenotype (0/1, or plink's 1 control / 2 case); "
                     f"found {len(seen)} values ({shown}{', ...' if len(seen) > 5 else ''})")


def stratified_split(strata: np.ndarray, fracs: tuple, seed: int) -> dict[str, np.ndarray]:
    """Positions per split, each stratum cut in the same proportions."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        n_train = int(round(fracs[0] * len(idx)))
        n_val = int(round(fracs[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


class AuditDataModule(pl.LightningDataModule):
    def __init__(self, source: str = "simulated", bfile: str | None = None, pfile: str | None = None,
                 vcf: str | None = None, labels: str | None = None, label_column: str = "population",
                 phenotype: str | None = None, phenotype_column: str | None = None, causal: str | None = None,
                 scenario: dict | None = None, cache_dir: str | None = None, split: tuple = (0.7, 0.15, 0.15),
                 split_seed: int = 0, pcs: int = 10, correction: str = "none", ancestry_run: str | None = None,
                 ancestry_components: int = 10, ancestry_train: list | tuple = (), batch_size: int = 64,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        if source not in SOURCES:
            raise InputError(f"data.source={source!r}: choose one of {', '.join(SOURCES)}")
        if correction not in CORRECTIONS:
            raise InputError(f"audit.correction={correction!r}: choose one of {', '.join(CORRECTIONS)}")
        if len(split) != 3 or any(f <= 0 for f in split) or abs(sum(split) - 1) > 1e-6:
            raise InputError(f"data.split={list(split)}: three positive fractions summing to 1")
        if pcs < 1:
            raise InputError(f"data.pcs={pcs}: the corrections and the ancestry ceiling need at least 1 PC")
        given = {"bfile": bfile, "pfile": pfile, "vcf": vcf}
        key = SOURCES[source]
        extra = [k for k, v in given.items() if v and k != key]
        if extra:
            raise InputError(f"data.{extra[0]} is set but data.source={source}; set data.source="
                             + next(s for s, k in SOURCES.items() if k == extra[0]))
        if key and not given[key]:
            raise InputError(f"data.source={source} needs data.{key}=" + ("FILE" if key == "vcf" else "PREFIX"))
        if source != "simulated" and not phenotype:
            raise InputError(f"data.source={source} needs data.phenotype=FILE (FID IID value, or sample value, "
                             "with a header)")
        self.source, self.path = source, given.get(key) if key else None
        self.labels_path, self.label_column = labels, label_column
        self.phenotype_path, self.phenotype_column, self.causal_path = phenotype, phenotype_column, causal
        self.scenario = dict(scenario or {})
        self.cache_dir = cache_dir
        self.split_fracs = tuple(float(f) for f in split)
        self.split_seed, self.seed = split_seed, seed
        self.n_pcs, self.correction = pcs, correction
        self.ancestry_run, self.ancestry_components = ancestry_run, ancestry_components
        self.ancestry_train = [str(o) for o in ancestry_train or ()]
        self.batch_size, self.num_workers = batch_size, num_workers
        self.ready = False

    # -- building ---------------------------------------------------------------------
    def _files(self) -> None:
        if self.source == "simulated":
            files = load_scenario(**self.scenario, cache_dir=self.cache_dir)
            self.kind, self.path = "plink", files.bfile
            self.labels_path = self.labels_path or files.labels
            if not self.phenotype_path:
                self.phenotype_path, self.causal_path = files.phenotype, self.causal_path or files.causal
        else:
            self.kind = self.source

    def open_genotypes(self):
        return {"plink": BedSource, "pgen": PgenSource, "vcf": VcfSource}[self.kind](self.path)

    def prepare_data(self) -> None:
        if not self.ready:
            self._files()

    def setup(self, stage: str | None = None) -> None:
        if self.ready:
            return
        self._files()
        source = self.open_genotypes()
        files = [*genotype_files(self.kind, self.path)[1], Path(self.phenotype_path)]
        self.digests = {str(f): d for f, d in zip(files, content_digests(files, cache_root(self.cache_dir)))}
        y_all = binary_phenotype(read_phenotype(self.phenotype_path, source.samples, self.phenotype_column),
                                 self.phenotype_path)
        people = np.flatnonzero(~np.isnan(y_all))
        y = y_all[people]
        if min((y == 0).sum(), (y == 1).sum()) < 5:
            raise InputError(f"{self.phenotype_path}: {int((y == 1).sum())} cases and {int((y == 0).sum())} "
                             "controls; the audit needs at least 5 of each")
        ids = [source.samples.iid[i] for i in people]
        pops = None
        if self.labels_path:
            lab = read_labels(self.labels_path, source.samples.iid, column=self.label_column,
                              allow_unlabelled=True)
            pops = np.array([lab[i] or "" for i in people])
            if (pops == "").any():
                raise InputError(f"{self.labels_path}: {int((pops == '').sum())} people with a phenotype have no "
                                 f"{self.label_column} label, e.g. {ids[int(np.argmax(pops == ''))]!r}")
        if self.correction == "balanced" and pops is None:
            raise InputError("audit.correction=balanced balances populations: give data.labels=TSV")
        strata = y.astype(int).astype(str) if pops is None else np.char.add(y.astype(int).astype(str), pops)
        splits = stratified_split(strata, self.split_fracs, self.split_seed)
        for name, idx in splits.items():
            if len(np.unique(y[idx])) < 2:
                raise InputError(f"data.split={list(self.split_fracs)}: the {name} split has no "
                                 f"{'cases' if y[idx].max() == 0 else 'controls'}; use more people")
        train = splits["train"]
        g = source.read_all()[people]  # (people, variants) int8
        freq, usable = allele_frequencies(g[train])
        keep = np.flatnonzero(usable)
        if len(keep) < 2:
            raise InputError(f"{self.path}: fewer than 2 variants are polymorphic among the training people")
        g = g[:, keep]
        x = standardise(g, freq[keep])
        v = source.variants
        self.variants = {"variant": [v.id[j] for j in keep], "chrom": [v.chrom[j] for j in keep],
                         "pos": np.asarray(v.pos)[keep]}
        # PCs: training people out of fold, everyone else projected (seq2king's own genotype PCs)
        m = x.shape[1]
        k_pf = (x @ x[train].T).astype(np.float64) / m  # the training people's own rows are K_ff
        pc = held_out_pcs(k_pf[train], k_pf, train, self.n_pcs, seed=self.split_seed)
        cov = np.zeros((len(people), 0))
        if self.correction == "pcs":
            cov = pc
        elif self.correction == "residualize":
            a = np.hstack([np.ones((len(people), 1)), pc])
            beta, *_ = np.linalg.lstsq(a[train], x[train].astype(np.float64), rcond=None)
            x = (x - a @ beta).astype(np.float32)
        elif self.correction == "seq2king":
            cov = seq2king_covariates(self, ids, splits)
        self.ids, self.populations, self.y = ids, pops, y
        self.genotypes = g  # raw ALT counts of the kept variants (oracle, Fst)
        self.splits = splits
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.pcs = torch.from_numpy(pc.astype(np.float32))
        self.covariates = torch.from_numpy(np.asarray(cov, dtype=np.float32))
        self.y_t = torch.from_numpy(y.astype(np.float32))
        # balanced: validation loss weighted the same way, so the checkpoint is not chosen by the shortcut
        w = np.ones(len(people))
        if self.correction == "balanced":
            for idx in splits.values():
                w[idx] = self.balance_weights(idx)
                w[idx] /= w[idx].mean()
        self.weights = torch.from_numpy(w.astype(np.float32))
        self.ready = True
        log.info("audit cohort %s: %d people with a phenotype (%d cases), %d variants; train %d, val %d, test %d; "
                 "correction %s", self.path, len(people), int(y.sum()), m, len(train), len(splits["val"]),
                 len(splits["test"]), self.correction)

    def model_kwargs(self) -> dict:
        """What the model needs to know of the data (train.py passes it on)."""
        self.setup()
        out = {"num_snps": int(self.x.shape[1]), "num_covariates": int(self.covariates.shape[1]),
               "num_pcs": int(self.pcs.shape[1])}
        if out["num_covariates"]:
            out["covariate_init"] = self.covariate_fit()
        return out

    def covariate_fit(self) -> list[float]:
        """Logistic regression of the phenotype on the covariates alone, training people: weights + intercept."""
        from sklearn.linear_model import LogisticRegression

        train = self.splits["train"]
        clf = LogisticRegression(max_iter=1000).fit(self.covariates[train].numpy(), self.y[train])
        return [float(w) for w in clf.coef_[0]] + [float(clf.intercept_[0])]

    def split_summary(self) -> dict:
        return {name: [self.ids[i] for i in idx] for name, idx in self.splits.items()} | {
            "source": f"{self.kind}:{self.path}", "phenotype": str(self.phenotype_path),
            "digests": dict(self.digests)}  # every byte of the genotypes and phenotypes the run was made from

    def write_split(self, path) -> None:
        write_json(path, self.split_summary())

    # -- batches ----------------------------------------------------------------------
    def collate(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        return {"x": self.x[i], "y": self.y_t[i], "covariates": self.covariates[i], "pcs": self.pcs[i],
                "weight": self.weights[i], "index": i}

    def balance_weights(self, people: np.ndarray) -> np.ndarray:
        """Weights that make every (population, phenotype) cell of ``people`` weigh the same."""
        cell = np.char.add(self.populations[people], self.y[people].astype(int).astype(str))
        _, inv, counts = np.unique(cell, return_inverse=True, return_counts=True)
        return 1.0 / counts[inv]

    def train_dataloader(self):
        self.setup()
        train = self.splits["train"]
        g = torch.Generator().manual_seed(self.seed)
        if self.correction == "balanced":
            sampler = WeightedRandomSampler(torch.as_tensor(self.balance_weights(train)), len(train),
                                            replacement=True, generator=g)
            return DataLoader(train.tolist(), batch_size=self.batch_size, sampler=sampler,
                              collate_fn=self.collate, num_workers=self.num_workers)
        return DataLoader(train.tolist(), batch_size=self.batch_size, shuffle=True, generator=g,
                          collate_fn=self.collate, num_workers=self.num_workers)

    def _eval_loader(self, name: str) -> DataLoader:
        self.setup()
        return DataLoader(self.splits[name].tolist(), batch_size=256, shuffle=False, collate_fn=self.collate,
                          num_workers=self.num_workers)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

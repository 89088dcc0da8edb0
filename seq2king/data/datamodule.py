"""Sequences of people for Seq2KING, split by INDIVIDUAL.

The cohort's people are split once (seeded) into train / val / test. Test people
are never seen in training in any form: not as tokens, not in the target
scaling, not in the reference panel. With the ``kinship`` tokenizer, a panel of
training people (landmarks) is set aside: every token's features are its KING
values against the panel, and panel members are not sequence tokens.

Training samples are random sets of training people with lengths drawn from
``[min_len, max_len]``, built from fresh permutations each epoch so every
training person appears about equally often. Validation and test sequences are
fixed (seeded) sets of val / test people.

A batch is a dict: ``index`` (B, n) positions in the cohort (-1 for padding),
``features`` (B, n, panel) scaled KING to the panel, ``target`` (B, n, n) scaled
KING between the tokens, ``mask`` (B, n) True for real tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from seq2king.data.cohort import STORES, Cohort, check_digests, load_genotypes, load_king, load_simulated
from seq2king.data.feature_cache import feature_key, load_features, save_features
from seq2king.data.king_source import MatrixKing, StoreGrm, king_source
from seq2king.errors import InputError
from seq2king.fileio import write_json
from seq2king.genetics.genotypes import open_genotypes
from seq2king.genetics.pca import (fit_frequencies, held_out_scores, relationship, standardise, standardised_kernels,
                                   streamed_pcs)

log = logging.getLogger(__name__)

SOURCES = ("simulated", "plink", "pgen", "vcf", "king")
SOURCE_KEYS = {"plink": "bfile", "pgen": "pfile", "vcf": "vcf", "king": "path"}  # the key each source reads
SCALINGS = ("standard", "minmax")
# what the model learns to predict between the people of a sequence: KING-robust (the paper's), or the genomic
# relationship (standardised genotypes, allele frequencies from training people), which keeps the allele-frequency
# information KING-robust discards on purpose
TARGETS = ("king", "grm")


@dataclass
class Scaler:
    """Affine map of KING values fitted on training pairs only."""

    kind: str
    shift: float
    scale: float

    @classmethod
    def fit(cls, kind: str, values: np.ndarray) -> "Scaler":
        if kind == "standard":
            return cls(kind, float(values.mean()), float(values.std() or 1.0))
        if kind == "minmax":  # the paper's [0, 1] normalisation, on training pairs
            lo, hi = float(values.min()), float(values.max())
            return cls(kind, lo, (hi - lo) or 1.0)
        raise InputError(f"data.scaling={kind!r}: choose one of {', '.join(SCALINGS)}")

    def __call__(self, x):
        return (x - self.shift) / self.scale


class SequenceSet(Dataset):
    """Sequences over a fixed list of cohort positions.

    ``random=True`` (training): a new plan each epoch (:meth:`set_epoch`) of
    shuffled people cut into sequences of random length. Otherwise one fixed
    plan of sequences of ``max_len`` (the last may be shorter).
    """

    def __init__(self, people: np.ndarray, n_sequences: int | None, min_len: int, max_len: int,
                 seed: int, random: bool):
        self.people = np.asarray(people)
        self.min_len, self.max_len = min_len, max_len
        self.seed, self.random = seed, random
        self.n_sequences = n_sequences
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.people)
        if not self.random:
            order = rng.permutation(self.people)
            plan = [order[i:i + self.max_len] for i in range(0, n, self.max_len)]
            if len(plan) > 1 and len(plan[-1]) < 2:  # a lone person has no pairs
                plan[-2] = np.concatenate([plan[-2], plan[-1]])[: self.max_len]
                plan.pop()
            self.plan = plan
            return
        plan, pool = [], np.empty(0, dtype=self.people.dtype)
        while len(plan) < self.n_sequences:
            length = int(rng.integers(self.min_len, self.max_len + 1))
            if len(pool) < length:  # refill with a fresh permutation: even coverage
                rest = rng.permutation(np.setdiff1d(self.people, pool))
                pool = np.concatenate([pool, rest])
            plan.append(pool[:length])
            pool = pool[length:]
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.plan[i]


class LengthBuckets(Sampler):
    """Training batches of similar-length sequences, so a batch is padded to little more than its own lengths.

    Each epoch's plan (:class:`SequenceSet`, whose sequences are already random sets
    of random length) is taken in windows of ``pool`` batches; each window is sorted
    by length and cut into batches, and the batches are shuffled. The sequences of an
    epoch and their number are unchanged: only which of them share a batch is. Under
    DDP each process takes every ``world``-th batch (the trainer's own sampler
    injection is turned off in the DDP presets). Lightning calls :meth:`set_epoch`.
    """

    def __init__(self, dataset: SequenceSet, batch_size: int, pool: int = 16, seed: int = 0):
        self.dataset, self.batch_size, self.pool, self.seed = dataset, batch_size, pool, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def _batches(self) -> list[np.ndarray]:
        lengths = np.array([len(s) for s in self.dataset.plan])
        window = self.batch_size * self.pool
        batches = []
        for start in range(0, len(lengths), window):
            idx = np.arange(start, min(start + window, len(lengths)))
            idx = idx[np.argsort(lengths[idx], kind="stable")]
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(len(batches))
        batches = [batches[i] for i in order]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            # every process takes as many steps (else DDP's gradient all-reduce waits for ever): the
            # last round is filled with the epoch's first batches, as DistributedSampler pads
            batches += batches[: -len(batches) % world]
            batches = batches[rank::world]
        return batches

    def __iter__(self):
        return (b.tolist() for b in self._batches())

    def __len__(self) -> int:
        n, window = len(self.dataset.plan), self.batch_size * self.pool
        total = sum(-(-min(window, n - start) // self.batch_size) for start in range(0, n, window))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return -(-total // torch.distributed.get_world_size())
        return total


class Seq2KingDataModule(pl.LightningDataModule):
    """Builds the cohort, the split, the panel and the scaler; serves batches."""

    def __init__(self, source: str = "simulated", path: str | None = None, bfile: str | None = None,
                 pfile: str | None = None, vcf: str | None = None, labels: str | None = None,
                 label_column: str = "superpopulation", simulation: dict | None = None,
                 cache_dir: str | None = None, split: tuple = (0.7, 0.15, 0.15), split_seed: int = 0,
                 tokenizer: str = "kinship", panel_size: int = 256, scaling: str = "standard",
                 min_len: int = 8, max_len: int = 128, sequences_per_epoch: int = 2000,
                 batch_size: int = 32, num_workers: int = 0, genotype_features: bool = True,
                 genotype_pcs: int = 32, bucket: bool = True, split_file: str | None = None, seed: int = 0,
                 store: str = "auto", memory_max_people: int = 5000, pca_fit_max: int = 10000,
                 target: str = "king"):
        super().__init__()
        if target not in TARGETS:
            raise InputError(f"data.target={target!r}: choose one of {', '.join(TARGETS)}")
        self.target = target
        if store not in STORES:
            raise InputError(f"data.store={store!r}: choose one of {', '.join(STORES)}")
        if memory_max_people < 0 or pca_fit_max < 2:
            raise InputError(f"data.memory_max_people={memory_max_people}, data.pca_fit_max={pca_fit_max}: "
                             "need memory_max_people >= 0 and pca_fit_max >= 2")
        self.store, self.memory_max_people, self.pca_fit_max = store, int(memory_max_people), int(pca_fit_max)
        self.scaler_pairs = 100000
        if source not in SOURCES:
            raise InputError(f"data.source={source!r}: choose one of {', '.join(SOURCES)}")
        if tokenizer not in ("kinship", "index"):
            raise InputError(f"model.tokenizer={tokenizer!r}: choose one of kinship, index")
        if not 2 <= min_len <= max_len:
            raise InputError(f"data.min_len={min_len}, data.max_len={max_len}: need 2 <= min_len <= max_len")
        if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
            raise InputError(f"data.split={list(split)}: three non-negative fractions summing to 1")
        self.source, self.labels_path = source, labels
        self.path = self._source_path(source, path=path, bfile=bfile, pfile=pfile, vcf=vcf)
        self.label_column = label_column
        self.simulation = dict(simulation or {})
        self.cache_dir = cache_dir
        self.split_fracs = tuple(float(f) for f in split)
        self.split_seed, self.seed = split_seed, seed
        self.tokenizer, self.panel_size, self.scaling = tokenizer, panel_size, scaling
        self.min_len, self.max_len = min_len, max_len
        self.sequences_per_epoch = sequences_per_epoch
        self.batch_size, self.num_workers = batch_size, num_workers
        self.genotype_features = genotype_features
        if genotype_pcs < 0:
            raise InputError(f"data.genotype_pcs={genotype_pcs}: must be 0 (none) or more")
        self.genotype_pcs = genotype_pcs
        self.bucket = bucket
        self.split_file = split_file
        self.cohort: Cohort | None = None

    @staticmethod
    def _source_path(source: str, **given) -> str | None:
        """The one path key ``source`` takes (plink2's flags: bfile, pfile, vcf; path for KING)."""
        wanted = SOURCE_KEYS.get(source)
        extra = [k for k, v in given.items() if v not in (None, "") and k != wanted]
        if extra:
            k = extra[0]
            if wanted is None:
                right = next(s for s, key in SOURCE_KEYS.items() if key == k)
                raise InputError(f"data.{k} is set but the data source is {source}; add data={right} "
                                 f"(e.g. python train.py data={right} data.{k}=...)")
            raise InputError(f"data={source} takes data.{wanted}=..., not data.{k}; "
                             f"use data.{wanted}={given[k]}")
        if wanted and not given.get(wanted):
            form = "FILE" if wanted in ("vcf", "path") else "PREFIX"
            raise InputError(f"data={source} needs data.{wanted}={form}")
        return given.get(wanted) if wanted else None

    # -- building ---------------------------------------------------------------------
    def store_mode(self) -> str:
        """``memory`` (the full KING matrix in memory: fastest for small cohorts) or ``stream`` (KING on
        demand from a person-major genotype store, nothing people x people) for this cohort: ``data.store``,
        and ``auto`` streams above ``data.memory_max_people`` people."""
        if self.source == "king":
            if self.store == "stream":
                raise InputError("data.store=stream needs genotypes (data=plink, pgen, vcf or simulated); "
                                 "a ready KING matrix is held in memory")
            return "memory"
        if self.store != "auto":
            return self.store
        if self.source == "simulated":
            n = int(self.simulation.get("samples", 1000))
        else:
            n = open_genotypes(**{SOURCE_KEYS[self.source]: self.path}).n_samples
        return "stream" if n > self.memory_max_people else "memory"

    def load_cohort(self) -> Cohort:
        mode = self.store_mode()
        if self.source == "king":
            return load_king(self.path, labels=self.labels_path, label_column=self.label_column)
        log.info("KING %s (data.store=%s, data.memory_max_people=%d)",
                 "on demand from a genotype store: no people x people matrix" if mode == "stream"
                 else "as a full matrix in memory", self.store, self.memory_max_people)
        if self.source == "simulated":
            return load_simulated(**self.simulation, label_column=self.label_column, cache_dir=self.cache_dir,
                                  store=mode)
        return load_genotypes(self.source, self.path, labels=self.labels_path,
                              label_column=self.label_column, cache_dir=self.cache_dir, store=mode)

    def prepare_data(self) -> None:
        # Simulation and KING land in the cache once, on one process; skip the
        # read when setup() already holds the cohort (Lightning calls this per fit/test).
        if self.cohort is None:
            self.load_cohort()

    def setup(self, stage: str | None = None) -> None:
        if self.cohort is not None:
            return
        cohort = self.load_cohort()
        n = len(cohort.ids)
        if self.split_file:
            splits = self._read_split_file(cohort.ids)
        else:
            rng = np.random.default_rng(self.split_seed)
            order = rng.permutation(n)
            n_train = int(round(self.split_fracs[0] * n))
            n_val = int(round(self.split_fracs[1] * n))
            splits = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
                      "test": np.sort(order[n_train + n_val:])}
        for name, idx in splits.items():
            if len(idx) < 2:
                raise InputError(
                    f"data.split={list(self.split_fracs)}: the {name} split of {n} people has {len(idx)}; "
                    "every split needs at least 2 people")
        train = splits["train"]
        if self.tokenizer == "kinship":
            if self.panel_size >= len(train) - 1:
                raise InputError(
                    f"data.panel_size={self.panel_size}: the panel must leave training people to train on "
                    f"({len(train)} in the train split)")
            panel = np.sort(np.random.default_rng([self.split_seed, 1]).choice(train, self.panel_size, replace=False))
            train = np.setdiff1d(train, panel)
        else:
            panel = np.zeros(0, dtype=np.int64)
        if self.max_len > len(train):
            raise InputError(
                f"data.max_len={self.max_len} is longer than the {len(train)} training people available as "
                "tokens; lower data.max_len or use more people")
        self.cohort = cohort
        self.king = king_source(cohort)
        self.splits = {"train": train, "val": splits["val"], "test": splits["test"], "panel": panel}
        self._build_tokens(cohort, train, panel)
        eval_len = self.max_len
        self.datasets = {
            "train": SequenceSet(train, self.sequences_per_epoch, self.min_len, self.max_len, self.seed, True),
            "val": SequenceSet(splits["val"], None, 2, eval_len, self.seed + 1, False),
            "test": SequenceSet(splits["test"], None, 2, eval_len, self.seed + 2, False),
        }
        log.info("cohort %s: %d people; train tokens %d, panel %d, val %d, test %d; scaling %s (%.4g, %.4g)",
                 cohort.source, n, len(train), len(panel), len(splits["val"]), len(splits["test"]),
                 self.scaler.kind, self.scaler.shift, self.scaler.scale)

    def _build_tokens(self, cohort: Cohort, train: np.ndarray, panel: np.ndarray) -> None:
        """The target scaler and each person's token, from :attr:`king` (the full matrix or the genotype store):
        the scaler from training pairs (all of them with the matrix, ``scaler_pairs`` random ones from the
        store), KING to the panel, then the genotype features (:meth:`_genotype_block`) and the input lines.
        A streamed cohort's tokens are cached beside its store, keyed by everything they depend on."""
        self.targets = self.king if self.target == "king" else self._relationship_source(cohort, train, panel)
        cache = None
        if cohort.store is not None:
            cache = (Path(cohort.store.prefix).parent, feature_key(
                store=cohort.store.header, rows=cohort.store_rows, train=train, panel=panel.tolist(),
                scaling=self.scaling, genotype_features=self.genotype_features, pcs=self.genotype_pcs,
                pca_fit_max=self.pca_fit_max, seed=self.split_seed,
                **({"target": self.target} if self.target != "king" else {})))
            if (hit := load_features(*cache, len(cohort.ids))) is not None:
                features, meta = hit
                self.features = torch.from_numpy(features)
                self.scaler = Scaler(*meta["scaler"])
                self.target_mean, self.target_top = meta["target_mean"], meta["target_top"]
                self.feature_blocks = {k: tuple(v) for k, v in meta["feature_blocks"].items()}
                self.input_lines = meta["input_lines"]
                return
        pairs = self.targets.scaler_pairs(train, self.scaler_pairs, self.split_seed)
        self.scaler = Scaler.fit(self.scaling, pairs)
        self.target_mean = float(self.scaler(pairs.mean()))  # the predict-the-mean baseline
        # the closest unrelated pairs: where a distance readout's bias (its prediction at distance 0) starts
        self.target_top = float(self.scaler(np.quantile(pairs, 0.99)))
        n = len(cohort.ids)
        self.features = (torch.from_numpy(self.scaler(self.king.rectangle(np.arange(n), panel))).float()
                         if len(panel) else torch.zeros(n, 0))
        # which columns of a token are what: (start, stop) of "king", "grm" and "pcs"
        self.feature_blocks = {"king": (0, len(panel))} if len(panel) else {}
        if self.genotype_features and len(panel) and cohort.genotypes:
            self._add_genotype_features(self._genotype_block(cohort, train, panel))
        self._fit_input_line(train)
        if cache is not None:
            save_features(*cache, self.features.numpy(),
                          scaler=[self.scaler.kind, self.scaler.shift, self.scaler.scale],
                          target_mean=self.target_mean, target_top=self.target_top,
                          feature_blocks={k: list(v) for k, v in self.feature_blocks.items()},
                          input_lines=self.input_lines)

    def _relationship_source(self, cohort: Cohort, train: np.ndarray, panel: np.ndarray):
        """``data.target=grm``: the genomic relationship between any two people, allele frequencies from training
        people (tokens and panel): a full matrix (one pass over the genotypes) or computed from the store."""
        fit = np.sort(np.concatenate([train, panel]))
        if cohort.store is not None:
            freq, keep = fit_frequencies(cohort.store, cohort.store_rows[fit])
            return StoreGrm(cohort.store, cohort.store_rows, freq, keep)
        source = cohort.open_genotypes()
        if source is None:
            raise InputError("data.target=grm needs genotypes (data=plink, pgen, vcf or simulated); a KING matrix "
                             "alone has no allele frequencies")
        row = {iid: i for i, iid in enumerate(source.samples.iid)}
        rows = np.array([row[i] for i in cohort.ids])
        return MatrixKing(relationship(source, rows[fit], rows))

    def _add_genotype_features(self, extra: torch.Tensor) -> None:
        """Append the genomic relationship to the panel (as wide as the panel) and the PCs to the tokens."""
        p = self.feature_blocks["king"][1]
        self.features = torch.cat([self.features, extra], 1)
        self.feature_blocks["grm"] = (p, 2 * p)
        if self.features.shape[1] > 2 * p:
            self.feature_blocks["pcs"] = (2 * p, int(self.features.shape[1]))

    def _genotype_block(self, cohort: Cohort, train: np.ndarray, panel: np.ndarray) -> torch.Tensor:
        """What KING-robust discards on purpose, allele frequencies, as token features ``(n, panel + pcs)``.

        Genotypes are standardised with allele frequencies from training people only (tokens and panel):

        - each person's genomic relationship with the panel, scaled to unit variance over the training
          tokens' rows;
        - ``genotype_pcs`` principal components (what ``plink2 --pca`` users draw), fitted on training
          people; training tokens are scored out of fold (:func:`~seq2king.genetics.pca.out_of_fold_scores`),
          so that they look like the new people the model will meet; each PC scaled to unit variance over
          them.

        With the full matrix in memory, one pass over the genotype files and exact kernel PCA; streamed, passes
        over the store and scikit-learn's randomized PCA fitted on at most ``data.pca_fit_max`` training people
        (:func:`~seq2king.genetics.pca.streamed_pcs`).
        """
        fit = np.concatenate([train, panel])
        if cohort.store is None:
            source = cohort.open_genotypes()
            row = {iid: i for i, iid in enumerate(source.samples.iid)}
            rows = np.array([row[i] for i in cohort.ids])
            k_ff, k_pf, m = standardised_kernels(source, rows[fit], rows)
            if m == 0:
                raise InputError(f"{getattr(source, 'path', source)}: no variant is polymorphic among the "
                                 f"{len(fit)} training people")
            k_ff, k_pf = k_ff / m, k_pf / m
            grm = k_pf[:, len(train):]  # (n, panel): the panel is the tail of ``fit``
            pcs = held_out_scores(k_ff, k_pf, train, self.genotype_pcs, seed=self.split_seed) \
                if self.genotype_pcs else None
        else:
            store, rows = cohort.store, cohort.store_rows
            fit = np.sort(fit)
            freq, keep = fit_frequencies(store, rows[fit])
            zp = standardise(store.rows(rows[panel])[:, keep], freq)
            grm = np.empty((len(rows), len(panel)))
            for sl, g in store.row_blocks(rows):
                grm[sl] = standardise(g[:, keep], freq) @ zp.T / len(freq)
            pcs = streamed_pcs(store, rows, keep, freq, fit, train, self.genotype_pcs, fit_max=self.pca_fit_max,
                               seed=self.split_seed) if self.genotype_pcs else None
        ref = grm[train]
        parts = [(grm - ref.mean()) / (ref.std() or 1.0)]
        if pcs is not None:
            sd = pcs[train].std(0)
            parts.append(pcs / np.where(sd > 0, sd, 1.0))
        return torch.from_numpy(np.concatenate(parts, 1)).float()

    def _fit_input_line(self, train: np.ndarray, pairs: int = 20000) -> None:
        """KING against the distance between token features, on random training pairs (what
        ``model.input_bias`` starts from), for all the features (``inputs``) and for the genotype PCs alone
        (``pcs``): ``columns``, ``scale`` (the mean squared distance between two tokens' columns) and the
        least-squares line ``scaled KING ~ intercept - slope * distance / scale``."""
        self.input_lines = {}
        if self.features.shape[1] == 0:
            return
        rng = np.random.default_rng([self.split_seed, 2])
        a, b = rng.choice(train, pairs), rng.choice(train, pairs)
        a, b = a[a != b], b[a != b]
        t = self.scaler(self.targets.pairs(a, b))
        diff = (self.features[torch.from_numpy(a)] - self.features[torch.from_numpy(b)]).double()
        blocks = {"inputs": (0, int(self.features.shape[1]))}
        if "pcs" in self.feature_blocks:
            blocks["pcs"] = self.feature_blocks["pcs"]
        for name, (lo, hi) in blocks.items():
            d2 = diff[:, lo:hi].square().sum(1).numpy()
            scale = float(d2.mean())
            if not scale > 0:
                continue
            x = d2 / scale
            slope = max(-float(np.cov(t, x, bias=True)[0, 1] / max(x.var(), 1e-12)), 0.0)
            self.input_lines[name] = {"columns": [lo, hi], "scale": scale, "slope": slope,
                                      "intercept": float(t.mean() + slope * x.mean())}

    def _read_split_file(self, ids: list[str]) -> dict[str, np.ndarray]:
        """``data.split_file``: a JSON ``{"train": [IDs], "val": [...], "test": [...]}`` (a run's
        ``split.json`` works; its panel counts as training). People in no list are left out."""
        import json

        path = Path(self.split_file)
        try:
            given = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"data.split_file={path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"data.split_file={path}: not JSON ({e})") from None
        if not isinstance(given, dict) or any(not isinstance(given.get(k), list) for k in ("train", "val", "test")):
            raise InputError(f"data.split_file={path}: needs lists of sample IDs under train, val and test")
        index = {iid: i for i, iid in enumerate(ids)}
        out, seen = {}, set()
        for name in ("train", "val", "test"):
            names = list(given[name]) + (list(given.get("panel") or []) if name == "train" else [])
            missing = [str(x) for x in names if x not in index]
            if missing:
                raise InputError(f"data.split_file={path}: {len(missing)} {name} ID(s) not in the cohort, "
                                 f"e.g. {missing[0]!r}")
            twice = seen.intersection(names)
            if twice:
                raise InputError(f"data.split_file={path}: {next(iter(twice))!r} is in more than one split")
            seen.update(names)
            out[name] = np.sort(np.array([index[x] for x in names], dtype=np.int64))
        return out

    @property
    def num_features(self) -> int:
        """Features per token (kinship tokenizer): KING to the panel, plus genomic relationship when used."""
        self.setup()
        return int(self.features.shape[1])

    @property
    def num_individuals(self) -> int:
        self.setup()
        return len(self.cohort.ids)

    def model_kwargs(self) -> dict:
        """What the model needs to know of the data (train.py passes it on)."""
        self.setup()
        return {"num_individuals": self.num_individuals, "target_mean": self.target_mean,
                "target_top": self.target_top, "num_features": self.num_features,
                "input_lines": self.input_lines}

    def split_summary(self) -> dict:
        """IDs in each split (what ``split.json`` in the run directory holds)."""
        ids = self.cohort.ids
        out = {name: [ids[i] for i in idx] for name, idx in self.splits.items()}
        out["scaler"] = {"kind": self.scaler.kind, "shift": self.scaler.shift, "scale": self.scaler.scale}
        out["source"] = self.cohort.source
        out["digests"] = dict(self.cohort.digests or {})  # what the run was made from: every byte's digest
        return out

    def write_split(self, path: Path) -> None:
        write_json(path, self.split_summary())

    # -- batches ----------------------------------------------------------------------
    def collate(self, seqs: list[np.ndarray]) -> dict:
        lens = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        mask = np.arange(lens.max())[None, :] < lens[:, None]  # (b, n), real tokens first
        index = np.full(mask.shape, -1, dtype=np.int64)
        index[mask] = np.concatenate(seqs)  # row by row, as the mask's True entries are ordered
        index, mask = torch.from_numpy(index), torch.from_numpy(mask)
        safe = index.clamp_min(0)
        # each sequence's target (KING from the matrix or the store: the same values; or the genomic relationship), scaled
        target = torch.from_numpy(np.stack([self.scaler(self.targets.block(row)) for row in safe.numpy()])
                                  .astype(np.float32))
        features = self.features[safe]
        return {"index": index, "features": features, "target": target, "mask": mask}

    def _loader(self, name: str) -> DataLoader:
        ds, sampler = self.datasets[name], None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # the DDP presets turn the trainer's sampler injection off (for LengthBuckets): shard here
            sampler = DistributedSampler(ds, shuffle=False)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=False)

    def train_dataloader(self):
        if not self.bucket:
            return self._loader("train")
        sampler = LengthBuckets(self.datasets["train"], self.batch_size, seed=self.seed)
        return DataLoader(self.datasets["train"], batch_sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=False)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def state_dict(self) -> dict:
        # Plain ints and strings only: checkpoints load with weights_only=True.
        if self.cohort is None:
            return {}
        return {"splits": {k: [int(i) for i in v] for k, v in self.splits.items()},
                "scaler": [self.scaler.kind, self.scaler.shift, self.scaler.scale],
                "digests": {str(k): str(v) for k, v in (self.cohort.digests or {}).items()}}

    def load_state_dict(self, state: dict) -> None:
        if not state or self.cohort is None:
            return
        check_digests(state.get("digests"), self.cohort.digests, "the checkpoint",
                      "resume needs the data it was trained on (or train afresh without ckpt_path)")
        for k, v in state["splits"].items():
            if list(map(int, self.splits[k])) != v:
                raise InputError(
                    "the checkpoint was trained on a different split of this cohort; "
                    "use the same data and data.split_seed to resume")

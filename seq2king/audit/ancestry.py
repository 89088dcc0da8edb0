"""seq2king's own map of ancestry as covariates (``audit.correction=seq2king``).

With ``audit.ancestry_run=RUN_DIR`` the embeddings come from that trained seq2king run
(its cohort must hold the audit's people). Without it the audit trains the default
seq2king model on the audit's *training* people of the same genotypes first, in this
process from the package's configs (as ``python train.py data=plink data.bfile=...
data.split_file=...`` would: its validation and test people are the audit's), and caches
the run under ``cache_dir/seq2king_runs/KEY``, keyed by the genotypes' digests and the
split and checked by a manifest, so a sweep trains it once.

Every person is embedded inductively, as the analysis does: sequences of people of one
split at a time (:func:`~seq2king.analysis.attention.make_sequences`), the model's final
embedding averaged over the sequences a person appears in. The embeddings are reduced
to ``ancestry_components`` principal components fitted on training people and scaled to
unit variance over them, the same shape as the ``pcs`` correction's covariates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from seq2king.analysis.attention import extract, longest_sequence, make_sequences
from seq2king.analysis.runs import load_run
from seq2king.data.cohort import cache_key, cache_root, content_digests, genotype_files
from seq2king.errors import InputError
from seq2king.fileio import temp_folder, write_text
from seq2king.integrity import check_listed, write_manifest
from seq2king.training import compose, train

log = logging.getLogger(__name__)

VERSION = 1  # bump when the cached run's recipe changes


@contextlib.contextmanager
def _own_random_state():
    """Training seeds every generator (Lightning's ``seed_everything``): the audit's own draws after it must
    not depend on whether the ancestry model was trained in this process or read from the cache."""
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    seed = os.environ.get("PL_GLOBAL_SEED")
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if seed is None:
            os.environ.pop("PL_GLOBAL_SEED", None)
        else:
            os.environ["PL_GLOBAL_SEED"] = seed


def cached_run(dm, splits_ids: dict[str, list[str]]) -> Path:
    """The default seq2king run on the audit's training people, trained on first use (in this process, from
    the package's own configs), then read from the cache after its manifest is checked."""
    cache = cache_root(dm.cache_dir)
    files = content_digests(genotype_files(dm.kind, dm.path)[1], cache)
    key = cache_key({"kind": "audit_seq2king", "v": VERSION, "files": files, "split": splits_ids,
                     **({"train": dm.ancestry_train} if dm.ancestry_train else {})})
    run_dir = cache / "seq2king_runs" / key
    manifest = run_dir.parent / f"{key}.json"  # its checkpoints and config, checked like every cache entry
    found, why = check_listed(manifest, run_dir, expect={"recipe": VERSION})
    if found is not None:
        log.info("seq2king ancestry model: cached run %s", run_dir)
        return run_dir
    if why != "not built":
        log.warning("cached seq2king ancestry run %s cannot be used (%s): training it again", run_dir, why)
    manifest.unlink(missing_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    split_file = run_dir.parent / f"{key}.split.json"  # beside the run: its saved config points here
    write_text(split_file, json.dumps(splits_ids))
    flag = {"plink": "bfile", "pgen": "pfile", "vcf": "vcf"}[dm.kind]
    overrides = [f"data={dm.kind}", f"data.{flag}={dm.path}", f"data.split_file={split_file}", "logger=none",
                 f"paths.cache_dir={cache}", *dm.ancestry_train]
    with temp_folder(run_dir) as tmp:
        log.info("training the seq2king ancestry model on the %d audit training people (cached in %s): "
                 "train.py %s", len(splits_ids["train"]), run_dir, " ".join(overrides))
        with _own_random_state():
            train(compose("train", overrides, output_dir=tmp))
        if not run_dir.exists():  # else another process finished first
            os.replace(tmp, run_dir)
    kept = [*sorted((run_dir / "checkpoints").glob("*.ckpt")), run_dir / "split.json", run_dir / ".hydra" / "config.yaml"]
    write_manifest(manifest, {str(p.relative_to(run_dir)): p for p in kept}, recipe=VERSION)
    return run_dir


def embed(run_dir: Path, ids: list[str], groups: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """``(len(ids), d)`` mean final embeddings, each group of positions embedded among itself."""
    run = load_run(str(run_dir))
    dm, net = run.datamodule, run.module.net
    where = {iid: i for i, iid in enumerate(dm.cohort.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise InputError(f"audit.ancestry_run={run_dir}: its cohort lacks {len(missing)} of the audit's people "
                         f"(e.g. {missing[0]!r}); train it on the same genotypes")
    max_seq = longest_sequence(net, 256)
    out = np.zeros((len(ids), net.cfg.d_model))
    torch.manual_seed(seed)
    for k, group in enumerate(groups):
        pos = np.array([where[ids[i]] for i in group])
        ex = extract(net, dm, make_sequences(pos, max_seq, 4, seed + k), schemes=("none",))
        out[group] = np.stack([ex.embeddings[int(p)] for p in pos])
    return out


def seq2king_covariates(dm, ids: list[str], splits: dict[str, np.ndarray]) -> np.ndarray:
    """``(len(ids), ancestry_components)`` covariates from seq2king embeddings (see the module doc)."""
    splits_ids = {k: [ids[i] for i in v] for k, v in splits.items()}
    run_dir = Path(dm.ancestry_run) if dm.ancestry_run else cached_run(dm, splits_ids)
    if not run_dir.is_dir():
        raise InputError(f"audit.ancestry_run={run_dir}: not a directory")
    emb = embed(run_dir, ids, [splits["train"], splits["val"], splits["test"]], seed=dm.split_seed)
    train = splits["train"]
    k = min(dm.ancestry_components, emb.shape[1], len(train) - 1)
    pca = PCA(n_components=k, random_state=0).fit(emb[train])
    z = pca.transform(emb)
    sd = z[train].std(0)
    return z / np.where(sd > 0, sd, 1.0)

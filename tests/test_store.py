"""Streamed cohorts: the person-major genotype store, KING on demand, nothing people x people.

The fixture (tests/data/king_fixture.*) has ~1% missing calls, a duplicate, relatives, a person with no
heterozygous calls and variants KING leaves out; plink2's own KING matrix of it is committed (golden).
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURE, GOLDEN

ROOT = Path(__file__).resolve().parents[1]


def _same(a, b):
    """Bit for bit, non-finite values included (plink2's -inf and nan)."""
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.store import GenotypeStore

    prefix = tmp_path_factory.mktemp("store") / "fixture"
    return GenotypeStore.open_or_build(prefix, BedSource(FIXTURE), progress=False)


def test_store_king_is_plink2s_matrix_bit_for_bit(store):
    from seq2king.genetics.kingio import read_king

    ref = read_king(GOLDEN / "king_fixture.king.bin", check_finite=False)
    n = store.n
    assert n == len(ref.ids) == 64 and store.miss.sum() > 0  # missing calls: the full-count path
    full = store.king(np.arange(n))
    off = ~np.eye(n, dtype=bool)
    assert _same(full[off], ref.values[off])
    assert np.isneginf(full).any() or np.isnan(full).any()  # the person with no heterozygous call, as plink2
    rng = np.random.default_rng(0)
    a, b = rng.permutation(n)[:20], rng.permutation(n)[:31]  # any order, a rectangle
    assert _same(store.king(a, b), ref.values[np.ix_(a, b)])
    i, j = rng.integers(0, n, 500), rng.integers(0, n, 500)
    i, j = i[i != j], j[i != j]
    from seq2king.genetics.store import store_king_pairs

    assert _same(store_king_pairs(store, i, j), ref.values[i, j])


def test_store_fast_path_equals_the_full_counts():
    """Without missing calls a sequence's KING is one int8 product and the per-person sums: same bits as the
    operands KingEngine uses."""
    from seq2king.genetics.store import king_block

    rng = np.random.default_rng(1)
    g = rng.binomial(2, rng.uniform(0.05, 0.5, 3000), (40, 3000)).astype(np.int8)
    ref = king_block(g)
    h = (g == 1).sum(1)
    sq = h + 4 * (g == 2).sum(1)
    gg = g.astype(np.int64) @ g.T.astype(np.int64)
    from seq2king.genetics.king import _kinship

    assert _same(ref, _kinship(sq[:, None] + sq[None, :] - 2 * gg, np.minimum(h[:, None], h[None, :])))


def test_a_store_that_does_not_match_its_genotypes_is_rebuilt(tmp_path, caplog):
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.store import GenotypeStore
    from seq2king.integrity import write_manifest

    prefix = tmp_path / "s"
    source = BedSource(FIXTURE)
    first = GenotypeStore.open_or_build(prefix, source, progress=False)
    good = first.king(np.arange(10))
    header = json.loads(Path(f"{prefix}.store.json").read_text())
    files = {"store.npy": f"{prefix}.store.npy", "stats.npy": f"{prefix}.store.stats.npy"}
    meta = {k: v for k, v in header.items() if k not in ("files", "seal")}
    # a store of other people at the same place, with a manifest that holds (sealed, checksums right)
    write_manifest(f"{prefix}.store.json", files, **{**meta, "ids": "0" * 32})
    with caplog.at_level(logging.WARNING):
        again = GenotypeStore.open_or_build(prefix, source, progress=False)
    assert "cannot be used" in caplog.text and "people differ" in caplog.text
    assert _same(again.king(np.arange(10)), good)
    # a hand-edited manifest: its seal no longer holds
    edited = json.loads(Path(f"{prefix}.store.json").read_text())
    Path(f"{prefix}.store.json").write_text(json.dumps({**edited, "variants": edited["variants"] - 1}))
    assert "not sealed" in GenotypeStore.matches(prefix, source)
    assert _same(GenotypeStore.open_or_build(prefix, source, progress=False).king(np.arange(10)), good)
    size = Path(f"{prefix}.store.npy").stat().st_size
    with open(f"{prefix}.store.npy", "r+b") as fh:
        fh.truncate(1000)
    assert GenotypeStore.matches(prefix, source) == f"s.store.npy is 1,000 bytes, its manifest says {size}"
    assert _same(GenotypeStore.open_or_build(prefix, source, progress=False).king(np.arange(10)), good)
    # the same size, 400 bytes overwritten in place: caught by the checksum, rebuilt, the same values
    with open(f"{prefix}.store.npy", "r+b") as fh:
        fh.seek(size // 2)
        fh.write(bytes(400))
    assert "does not match its checksum" in GenotypeStore.matches(prefix, source)
    assert _same(GenotypeStore.open_or_build(prefix, source, progress=False).king(np.arange(10)), good)
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind


def _datamodule(tmp_path, store, **kw):
    from seq2king.data.datamodule import Seq2KingDataModule

    dm = Seq2KingDataModule(source="plink", bfile=str(FIXTURE), cache_dir=str(tmp_path / "cache"), store=store,
                            panel_size=12, min_len=4, max_len=16, sequences_per_epoch=32, batch_size=8,
                            genotype_pcs=4, **kw)
    dm.setup()
    return dm


def test_streamed_batches_equal_the_full_matrix_path(tmp_path, caplog):
    """Same people, split and panel; each batch's targets computed from the store equal the full matrix's
    entries bit for bit (same scaler); the token features' KING and genomic relationship columns agree."""
    with caplog.at_level(logging.INFO):
        mem = _datamodule(tmp_path, "memory")
        st = _datamodule(tmp_path, "stream")
    assert "as a full matrix in memory" in caplog.text and "on demand from a genotype store" in caplog.text
    assert st.cohort.king is None and mem.cohort.ids == st.cohort.ids and len(st.cohort.ids) == 63
    assert all(np.array_equal(mem.splits[k], st.splits[k]) for k in mem.splits)
    # the scaler comes from sampled training pairs: close to all pairs'
    assert st.scaler.shift == pytest.approx(mem.scaler.shift, abs=0.1 * mem.scaler.scale)
    assert st.scaler.scale == pytest.approx(mem.scaler.scale, rel=0.1)
    st.scaler = mem.scaler
    seqs = [st.datasets["train"][i] for i in range(8)] + [st.datasets["val"][0]]
    a, b = mem.collate(seqs), st.collate(seqs)
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["mask"], b["mask"])
    val = st.splits["val"]
    assert _same(st.king.block(val), mem.king.block(val))
    lo, hi = st.feature_blocks["grm"]
    assert torch.allclose(st.features[:, lo:hi], mem.features[:, lo:hi], atol=1e-5)
    lo, hi = st.feature_blocks["pcs"]
    first = [abs(np.corrcoef(st.features[:, lo + k], mem.features[:, lo + k])[0, 1]) for k in range(2)]
    assert min(first) > 0.95, first  # randomized PCA on the same people: the same leading axes


def test_auto_streams_above_memory_max_people(tmp_path, caplog):
    from seq2king.data.datamodule import Seq2KingDataModule
    from seq2king.errors import InputError

    with caplog.at_level(logging.INFO):
        dm = _datamodule(tmp_path, "auto", memory_max_people=50)
    assert dm.cohort.king is None and "data.store=auto, data.memory_max_people=50" in caplog.text
    assert _datamodule(tmp_path, "auto").cohort.king is not None
    # a second set-up reads its token features from the cache
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = _datamodule(tmp_path, "auto", memory_max_people=50)
    assert "token features read from" in caplog.text and torch.equal(again.features, dm.features)
    with pytest.raises(InputError, match="data.store='disk': choose one of auto, memory, stream"):
        Seq2KingDataModule(store="disk")
    with pytest.raises(InputError, match="data.store=stream needs genotypes"):
        Seq2KingDataModule(source="king", path=str(GOLDEN / "king_fixture.king.bin"), store="stream").setup()


def test_streamed_run_trains_and_analyzes_without_the_matrix(tmp_path):
    """train.py and analyze.py on a streamed cohort (data.store=stream), the analysis on a seeded sample."""
    cache = tmp_path / "cache"
    labels = tmp_path / "labels.tsv"
    ids = [ln.split()[1] for ln in Path(f"{FIXTURE}.fam").read_text().splitlines()]
    labels.write_text("IID\tgroup\n" + "".join(f"{i}\t{i[:3] if i[:3] in ('AFR', 'EUR', 'ASI') else 'ADM'}\n" for i in ids))
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "data=plink", f"data.bfile={FIXTURE}",
                          f"data.labels={labels}", "data.label_column=group", "data.store=stream", "model.panel_size=12", "data.min_len=4", "data.max_len=16",
                          "data.sequences_per_epoch=32", "data.batch_size=8", "model.d_model=32", "model.ffn_dim=64",
                          "model.depth=2", "model.heads=2", "trainer.max_epochs=1", "logger=csv",
                          f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "on demand from a genotype store" in log and "epoch 0: training took" in log
    assert list(cache.rglob("cohort.store.npy")) and not list(cache.rglob("*.king.bin"))  # no full matrix made
    res = subprocess.run([sys.executable, str(ROOT / "analyze.py"), f"run_dir={tmp_path}/run", "split=train",
                          "analysis.permutations=10", "analysis.bootstrap=10", "analysis.umap=false",
                          "analysis.max_people=20", f"hydra.run.dir={tmp_path}/alog"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "run" / "analysis" / "summary.json").read_text())
    assert s["n_individuals"] == 20 and "a seeded sample of 20 of the" in s["sample_note"]
    assert {"softmax_king", "softmax_grm"} <= {m["method"] for m in s["methods"]}


def test_the_genomic_relationship_target_is_the_same_from_the_matrix_and_the_store(tmp_path):
    """data.target=grm: each sequence's target is the genomic relationship (standardised genotypes, allele
    frequencies from training people), scaled; the in-memory matrix and the store give the same targets."""
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.pca import allele_frequencies, standardise

    mem = _datamodule(tmp_path, "memory", target="grm")
    st = _datamodule(tmp_path, "stream", target="grm")
    st.scaler = mem.scaler
    seqs = [st.datasets["train"][i] for i in range(6)]
    assert torch.allclose(mem.collate(seqs)["target"], st.collate(seqs)["target"], atol=1e-5)
    # against the definition, from the genotypes themselves
    src = BedSource(FIXTURE)
    row = {iid: i for i, iid in enumerate(src.samples.iid)}
    rows = np.array([row[i] for i in mem.cohort.ids])
    g = np.concatenate(list(src.iter_blocks(1 << 20, king_only=True)), axis=1)[rows]  # KING's variants, as the store
    fit = np.sort(np.concatenate([mem.splits["train"], mem.splits["panel"]]))
    freq, ok = allele_frequencies(g[fit])
    z = standardise(g[:, ok], freq[ok], np.float64)
    val = mem.splits["val"]
    assert np.allclose(mem.targets.block(val), z[val] @ z[val].T / ok.sum(), atol=1e-5)
    assert not np.allclose(mem.targets.block(val), mem.king.block(val))  # not KING

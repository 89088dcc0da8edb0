"""Faults injected for real: changed inputs, corrupted caches, file-system faults, kills.

Each test asserts what a user sees: the exit code, one line naming the file, no
traceback, no stale result (the rerun's output equals a clean run's bytes or
values) and no temporary file left behind.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURE, run_cli

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["model.panel_size=12", "data.min_len=4", "data.max_len=16", "data.sequences_per_epoch=32",
         "data.batch_size=8", "model.d_model=32", "model.ffn_dim=64", "model.depth=2", "model.heads=2",
         "trainer.max_epochs=1", "logger=none", "++callbacks.rich_progress_bar=null"]
ANALYZE = ["analysis.permutations=10", "analysis.bootstrap=10", "analysis.umap=false", "analysis.bertviz_people=8"]


def one_line_error(res, *needles):
    """Exit 2, stderr's last line is ``seq2king: error: ...`` naming every needle, and no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("seq2king: error: "), res.stderr[-3000:]
    for needle in needles:
        assert str(needle) in last, (needle, last)
    return last


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".tmp.sq"))]


def copy_fixture(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(f"{FIXTURE}{ext}", folder / f"g{ext}")
    return folder / "g"


def change_middle(path: Path, nbytes: int, seed: int = 0) -> None:
    """Overwrite ``nbytes`` in the middle of ``path`` with other bytes, in place: same size, same people."""
    size = path.stat().st_size
    start = max(3, size // 2 - nbytes // 2)
    with open(path, "r+b") as fh:
        fh.seek(start)
        old = np.frombuffer(fh.read(nbytes), dtype=np.uint8)
        fh.seek(start)
        fh.write((old ^ np.uint8(0b01010101)).tobytes())  # every genotype flipped, no padding bit touched
    assert path.stat().st_size == size


def write_bed(prefix: Path, n: int = 2000, m: int = 20000, seed: int = 0) -> Path:
    """A .bed/.bim/.fam of ``n`` people (a multiple of 4: no padding bits) x ``m`` variants of random bytes:
    every 2-bit code equally likely (a quarter of the calls missing), a valid .bed in a tenth of a second."""
    packed = np.random.default_rng(seed).integers(0, 256, size=(m, n // 4), dtype=np.uint8)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.bed").write_bytes(bytes([0x6C, 0x1B, 0x01]) + packed.tobytes())
    Path(f"{prefix}.bim").write_text("".join(f"1\tv{j}\t0\t{100 * j + 1}\tA\tG\n" for j in range(m)))
    Path(f"{prefix}.fam").write_text("".join(f"F{i}\tI{i}\t0\t0\t0\t-9\n" for i in range(n)))
    return prefix


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for real: chmod 555 for a normal user; as root (who ignores mode bits), the
    immutable attribute (chattr +i), under which even root cannot create a file there."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root where chattr +i is not available: no way to make a folder read-only")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k"):
    """A ``size`` file system mounted at ``folder`` (tmpfs; needs root): writing past it is ENOSPC for real."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def run_py(script, *args, timeout=600, env=None):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "WANDB_MODE": "offline", **(env or {})})


# ----------------------------------------------------------------------------- content-true caches


def _datamodule(bfile, cache, store, **kw):
    from seq2king.data.datamodule import Seq2KingDataModule

    dm = Seq2KingDataModule(source="plink", bfile=str(bfile), cache_dir=str(cache), store=store, panel_size=12,
                            min_len=4, max_len=16, sequences_per_epoch=32, batch_size=8, genotype_pcs=4, **kw)
    dm.setup()
    return dm


@pytest.mark.parametrize("store", ["memory", "stream"])
def test_a_same_size_change_mid_bed_gets_fresh_king(tmp_path, store):
    """The .bed's middle changes, same size and people: the cache key changes with it, so KING (the full
    matrix, or the store's) and the token features are the new file's, never the old run's."""
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.king import king_matrix

    bfile = copy_fixture(tmp_path / "data")
    cache = tmp_path / "cache"
    before = _datamodule(bfile, cache, store)
    old = before.king.block(np.arange(len(before.cohort.ids)))
    change_middle(Path(f"{bfile}.bed"), 20_000)
    after = _datamodule(bfile, cache, store)
    truth = king_matrix(BedSource(bfile))
    keep = [i for i, iid in enumerate(BedSource(bfile).samples.iid) if iid in set(after.cohort.ids)]
    new = after.king.block(np.arange(len(after.cohort.ids)))
    assert np.array_equal(new, truth[np.ix_(keep, keep)], equal_nan=True)
    assert not np.array_equal(new, old, equal_nan=True)
    assert not torch.equal(after.features, before.features)
    # a fresh datamodule on the same (changed) bytes with no cache agrees with the cached one
    clean = _datamodule(bfile, tmp_path / "clean_cache", store)
    assert torch.equal(clean.features, after.features)
    assert after.split_summary()["digests"] != before.split_summary()["digests"]
    assert not temporaries(tmp_path)


def _corrupt(path: Path, nbytes: int) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 3)
        fh.write(bytes(min(nbytes, size - size // 3)))
    assert path.stat().st_size == size


@pytest.mark.parametrize("fault", ["king.bin zeroed", "king.id truncated", "store overwritten", "stats truncated",
                                   "features truncated", "features inf", "features json garbage",
                                   "manifest edited", "manifest gone"])
def test_a_corrupted_cache_file_is_rebuilt_not_served(tmp_path, caplog, fault):
    bfile = copy_fixture(tmp_path / "data")
    cache = tmp_path / "cache"
    store = "memory" if fault.startswith("king") or fault.startswith("manifest") else "stream"
    clean = _datamodule(bfile, cache, store)
    clean_king = clean.king.block(np.arange(len(clean.cohort.ids)))
    entry = next(p.parent for p in cache.rglob("cohort.*"))
    if fault == "king.bin zeroed":
        _corrupt(entry / "cohort.king.bin", 4096)
    elif fault == "king.id truncated":
        p = entry / "cohort.king.id"
        p.write_text(p.read_text()[:100])
    elif fault == "store overwritten":
        _corrupt(entry / "cohort.store.npy", 40_000)
    elif fault == "stats truncated":
        p = entry / "cohort.store.stats.npy"
        p.write_bytes(p.read_bytes()[:200])
    elif fault.startswith("features"):
        npy = next(entry.glob("features-*.npy"))
        if fault == "features truncated":
            npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
        elif fault == "features inf":
            x = np.load(npy)
            x[3, 2] = np.inf
            np.save(npy, x)
        else:
            npy.with_suffix(".json").write_text("{not json")
    elif fault == "manifest edited":
        p = entry / "cohort.king.json"
        p.write_text(p.read_text().replace('"kind": "king"', '"kind": "kinG"'))
    else:
        (entry / "cohort.king.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _datamodule(bfile, cache, store)
    said = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    # one line for a cache that was there and is wrong; a missing manifest is an entry never finished
    assert len(said) == (0 if fault == "manifest gone" else 1), caplog.text
    assert np.array_equal(again.king.block(np.arange(len(again.cohort.ids))), clean_king, equal_nan=True)
    assert torch.equal(again.features, clean.features)
    assert again.scaler == clean.scaler
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _datamodule(bfile, cache, store)  # mended: the next run reads it without a word
    assert "cannot be used" not in caplog.text, caplog.text
    assert not temporaries(tmp_path)


def test_a_corrupted_simulated_cohort_is_simulated_again(tmp_path, caplog):
    from seq2king.data.cohort import load_simulated

    sim = {"model": "AmericanAdmixture_4B18", "samples": 40, "length": 1e6, "seed": 3}
    clean = load_simulated(**sim, cache_dir=str(tmp_path))
    bed = next(tmp_path.rglob("cohort.bed"))
    _corrupt(bed, 2000)
    with caplog.at_level(logging.WARNING):
        again = load_simulated(**sim, cache_dir=str(tmp_path))
    assert "simulated cohort" in caplog.text and "does not match its checksum" in caplog.text
    assert np.array_equal(again.king, clean.king) and again.digests == clean.digests


# ----------------------------------------------------------------------------- runs remember their inputs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on a copy of the fixture: ``(run dir, bfile, labels, cache)``."""
    tmp = tmp_path_factory.mktemp("trained")
    bfile = copy_fixture(tmp / "data")
    labels = tmp / "labels.tsv"
    ids = [ln.split()[1] for ln in Path(f"{FIXTURE}.fam").read_text().splitlines()]
    labels.write_text("IID\tgroup\tall\n" + "".join(
        f"{i}\t{i[:3] if i[:3] in ('AFR', 'EUR', 'ASI') else 'ADM'}\tone\n" for i in ids))
    res = run_py("train.py", "data=plink", f"data.bfile={bfile}", f"data.labels={labels}",
                 "data.label_column=all", *TRAIN, f"paths.cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / 'run'}")
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "run", bfile, labels, tmp / "cache"


def test_analyze_and_resume_refuse_genotypes_that_changed_since_training(trained, tmp_path):
    run, bfile, labels, cache = trained
    work = tmp_path / "run"
    shutil.copytree(run, work)
    saved = Path(f"{bfile}.bed").read_bytes()
    try:
        change_middle(Path(f"{bfile}.bed"), 2000)
        res = run_py("analyze.py", f"run_dir={work}", *ANALYZE, f"hydra.run.dir={tmp_path / 'alog'}")
        one_line_error(res, f"{bfile}.bed", "content changed since the run")
        assert not (work / "analysis" / "summary.json").exists()
        res = run_py("train.py", "data=plink", f"data.bfile={bfile}", f"data.labels={labels}",
                     "data.label_column=all", *TRAIN, "trainer.max_epochs=2", f"paths.cache_dir={cache}",
                     f"ckpt_path={work / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'resumed'}")
        one_line_error(res, f"{bfile}.bed", "content changed since the checkpoint")
    finally:
        Path(f"{bfile}.bed").write_bytes(saved)
    # the same bytes again: the run analyses (the single-group level skipped with one warning)
    res = run_py("analyze.py", f"run_dir={work}", *ANALYZE, f"hydra.run.dir={tmp_path / 'alog2'}")
    assert res.returncode == 0, res.stderr[-3000:]
    log = (tmp_path / "alog2" / "analyze.log").read_text()
    assert "label level all: every one of the" in log and "level skipped" in log
    summary = json.loads((work / "analysis" / "summary.json").read_text())
    assert list(summary["levels"]) == ["group"]


def _bad_checkpoint(good: Path, bad: Path, fault: str) -> Path:
    if fault == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif fault == "empty":
        bad.write_bytes(b"")
    elif fault == "garbage":
        bad.write_text("this is not a checkpoint\n")
    elif fault == "another model":  # a one-layer model's weights under this run's (two-layer) settings
        ckpt = torch.load(good, weights_only=True)
        ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("net.encoder.1.")}
        torch.save(ckpt, bad)
    elif fault == "a folder":
        bad.mkdir()
    return bad


def _composed(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "seq2king" / "conf"), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.mark.parametrize("fault", ["truncated", "empty", "garbage", "another model", "missing", "a folder"])
def test_a_checkpoint_that_does_not_load_is_one_line(trained, tmp_path, capsys, fault):
    """In-process (the checkpoint is read before any data): analyze's and train's library entry points."""
    from omegaconf import open_dict

    from seq2king import commands, training

    run, bfile, labels, cache = trained
    bad = _bad_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "bad.ckpt", fault)
    with pytest.raises(SystemExit) as stop:
        commands.analyze_command(_composed("analyze", [f"ckpt_path={bad}", f"run_dir={run}", *ANALYZE]))
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("seq2king: error: ") and str(bad) in last, last
    cfg = _composed("train", ["data=plink", f"data.bfile={bfile}", *TRAIN, f"ckpt_path={bad}",
                              f"paths.cache_dir={cache}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "t")
    with pytest.raises(SystemExit) as stop:
        training.run(cfg)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("seq2king: error: ") and str(bad) in last, last


def test_a_truncated_checkpoint_on_the_command_line(trained, tmp_path):
    run, bfile, labels, cache = trained
    bad = _bad_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "bad.ckpt", "truncated")
    res = run_py("analyze.py", f"ckpt_path={bad}", f"run_dir={run}", *ANALYZE, f"hydra.run.dir={tmp_path / 'a'}")
    one_line_error(res, str(bad), "not a readable checkpoint")
    res = run_py("train.py", "data=plink", f"data.bfile={bfile}", *TRAIN, f"paths.cache_dir={cache}",
                 f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 't'}")
    one_line_error(res, str(bad), "not a readable checkpoint")


def test_compare_names_a_torn_summary(trained, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(trained[0], sweep / "0")
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- model.depth=2\n")
    (sweep / "0" / "analysis").mkdir(exist_ok=True)
    (sweep / "0" / "analysis" / "summary.json").write_text('{"levels": {"group": {"headl')
    res = run_py("analyze.py", f"compare={sweep}", f"hydra.run.dir={tmp_path / 'c'}")
    one_line_error(res, sweep / "0" / "analysis" / "summary.json", "not the JSON object")
    assert not (sweep / "compare.csv").exists()


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "cachefile"
    blocker.write_text("x")
    res = run_py("train.py", "data=plink", f"data.bfile={FIXTURE}", *TRAIN, f"paths.cache_dir={blocker}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    one_line_error(res, f"data.cache_dir={blocker}", "a part of the path is a file, not a folder")


# ----------------------------------------------------------------------------- the king command's outputs


@pytest.mark.parametrize("flags", [[], ["--table"], ["--king-cutoff", "0.1"], ["--parallel", "1", "2"],
                                   ["--submit", "2", "--submit-cluster", "local"]])
def test_king_into_a_read_only_folder_is_one_line(tmp_path, flags):
    with read_only(tmp_path / "ro") as ro:
        res = run_cli("king", "--bfile", FIXTURE, "--out", ro / "o", *flags)
        one_line_error(res, ro / "o", "permission denied")
        assert not list(ro.iterdir())
    assert not (tmp_path / "ro.submitit").exists() and not Path(f"{ro}/o.submitit").exists()


def test_king_where_an_output_is_a_folder_or_under_a_file(tmp_path):
    (tmp_path / "o.king.bin").mkdir()
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "o", "--table")
    one_line_error(res, tmp_path / "o.king.bin", "is a folder, not a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.king.bin"]  # no .tmp, no half the outputs
    (tmp_path / "afile").write_text("x")
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "afile" / "o")
    one_line_error(res, tmp_path / "afile", "a part of the path is a file, not a folder")


def test_king_onto_a_full_disk_is_one_line(tmp_path):
    with small_disk(tmp_path / "full") as full:
        res = run_cli("king", "--bfile", FIXTURE, "--out", full / "o", "--table")
        one_line_error(res, full / "o", "no space left on the device")
        assert not list(full.iterdir())  # the half-written temporaries removed


def test_train_and_analyze_into_folders_that_cannot_be_written(trained, tmp_path):
    run, bfile, labels, cache = trained
    with read_only(tmp_path / "ro") as ro:
        res = run_py("train.py", "data=plink", f"data.bfile={bfile}", *TRAIN, f"paths.cache_dir={cache}",
                     f"hydra.run.dir={ro / 'run'}")
        one_line_error(res, ro / "run", "permission denied")
    work = tmp_path / "run"
    shutil.copytree(run, work)
    with read_only(work / "analysis"):
        res = run_py("analyze.py", f"run_dir={work}", *ANALYZE, f"hydra.run.dir={tmp_path / 'alog'}")
        one_line_error(res, work / "analysis", "permission denied")


@pytest.mark.parametrize("value", ["2", "1", "0.51", "inf", "nan"])
def test_king_table_filter_values_plink2_refuses(tmp_path, value):
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "o", "--king-table-filter", value)
    one_line_error(res, "--king-table-filter", "at most 0.5")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["0.5", "-1", "-1e9"])
def test_king_table_filter_values_plink2_takes(tmp_path, plink2, value):
    """The edges plink2 accepts (0.5 itself; any negative) give plink2's own table, byte for byte."""
    from conftest import run_plink2

    run_plink2(plink2, "--bfile", FIXTURE, "--make-king-table", "counts", "--king-table-filter", value,
               "--out", tmp_path / "ref")
    res = run_cli("king", "--bfile", FIXTURE, "--table-only", "--king-table-filter", value, "--out", tmp_path / "o")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o.kin0").read_bytes() == (tmp_path / "ref.kin0").read_bytes()


def test_king_cutoff_prefix_matches_fid_and_iid(tmp_path):
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    ids = (tmp_path / "m.king.id").read_text().splitlines()
    fields = ids[2].split("\t")
    ids[2] = "\t".join(["ZZZ", *fields[1:]])  # the same IIDs in the same order; one FID differs
    (tmp_path / "m.king.id").write_text("\n".join(ids) + "\n")
    res = run_cli("king", "--bfile", FIXTURE, "--out", tmp_path / "c", "--king-cutoff", tmp_path / "m", "0.1")
    one_line_error(res, "m.king.id", "FID and IID")
    assert not list(tmp_path.glob("c.*"))


def test_submit_checks_its_inputs_before_submitting(tmp_path):
    bfile = copy_fixture(tmp_path / "data")
    bed = Path(f"{bfile}.bed")
    bed.write_bytes(bed.read_bytes()[:-100])
    res = run_cli("king", "--bfile", bfile, "--out", tmp_path / "o", "--table-only", "--submit", "2",
                  "--submit-cluster", "local")
    one_line_error(res, f"{bfile}.bed", "truncated")
    assert "submitted" not in res.stdout and not (tmp_path / "o.submitit").exists()


# ----------------------------------------------------------------------------- kills


def _kill_when(proc, folder: Path, pattern: str, sig, min_bytes: int = 0, timeout: float = 120):
    """Send ``sig`` to ``proc`` once a temporary matching ``pattern`` in ``folder`` holds ``min_bytes``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        hits = [p for p in folder.rglob(pattern) if p.is_file()]
        if hits and max(p.stat().st_size for p in hits) >= min_bytes:
            proc.send_signal(sig)
            return proc.wait(timeout=120)
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before a {pattern} appeared in {folder}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no {pattern} in {folder} after {timeout} s")


@pytest.fixture(scope="module")
def big_bed(tmp_path_factory):
    """2,000 people x 20,000 variants (10 MB): a KING table takes seconds, long enough to kill mid-write."""
    return write_bed(tmp_path_factory.mktemp("big") / "big")


@pytest.fixture(scope="module")
def clean_king(big_bed, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "o"
    res = run_cli("king", "--bfile", big_bed, "--out", out, "--table")
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_king_killed_mid_write_leaves_nothing_after_the_rerun(tmp_path, big_bed, clean_king, sig):
    proc = subprocess.Popen([sys.executable, "-m", "seq2king.cli", "king", "--bfile", str(big_bed), "--out",
                             str(tmp_path / "o"), "--table"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    rc = _kill_when(proc, tmp_path, ".o.kin0.*.tmp", sig, min_bytes=1 << 20)
    err = proc.stderr.read()
    if sig == signal.SIGTERM:  # removed on the way out, one line, the shell's status for SIGTERM
        assert rc == 143 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("seq2king: terminated")
        assert not temporaries(tmp_path)
    else:
        assert rc == -signal.SIGKILL and temporaries(tmp_path)  # nobody can clean up after SIGKILL...
    assert not list(tmp_path.glob("o.*"))  # ...but no output was half-written under its own name
    res = run_cli("king", "--bfile", big_bed, "--out", tmp_path / "o", "--table")
    assert res.returncode == 0, res.stderr
    assert not temporaries(tmp_path)  # the rerun swept the killed process's temporaries
    for sfx in (".king.bin", ".king.id", ".kin0"):
        assert Path(f"{tmp_path}/o{sfx}").read_bytes() == Path(f"{clean_king}{sfx}").read_bytes(), sfx


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_training_killed_while_building_the_store(tmp_path, big_bed, sig):
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "data=plink", f"data.bfile={big_bed}",
                             "data.store=stream", *TRAIN, f"paths.cache_dir={cache}",
                             f"hydra.run.dir={tmp_path / 'run'}"], stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "WANDB_MODE": "offline"})
    rc = _kill_when(proc, cache, ".cohort.store.npy.*.tmp", sig)
    err = proc.stderr.read()
    if sig == signal.SIGTERM:
        assert rc == 143 and "Traceback" not in err, err[-3000:]
        assert not temporaries(cache)
    else:
        assert rc == -signal.SIGKILL and temporaries(cache)
    from seq2king.data.cohort import load_genotypes

    cohort = load_genotypes("plink", str(big_bed), cache_dir=str(cache), store="stream")
    assert not temporaries(cache)  # swept by the next run that writes there
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.store import king_block

    rows = np.arange(0, 2000, 97)
    assert np.array_equal(cohort.store.king(rows), king_block(BedSource(big_bed).read_all()[rows]))

"""How each stage grows with the number of people: wall time and peak memory, with plink2 beside KING.

    .venv/bin/python benchmarks/scale.py --sizes 2500 10000 30000 --loci 20000 --out /tmp/scale
    .venv/bin/python benchmarks/scale.py --sizes 30000 --king-max 0 --ddp-max 30000 --store stream

For each N: ``seq2king simulate --model WithinContinent26 --samples N --loci LOCI``; up to ``--king-max``
people the relatives of a biobank QC, ``seq2king king --table-only --king-table-filter 0.0442`` against
``plink2 --make-king-table --king-table-filter 0.0442 --threads 2`` on the same .bed (the two .kin0 files
are checked byte for byte; the ratio is ours / plink2's, below 1 is faster), and ``--king-cutoff 0.0442``
against plink2's (the ID lists checked); then one epoch of ``python train.py data=plink data.store=STORE``
(the same sequences per epoch at every N: ``data.sequences_per_epoch``; ``--store auto`` keeps the full
KING matrix up to ``data.memory_max_people`` and streams above it, ``--store stream`` streams at every N)
and ``python analyze.py``. Every figure is one run of a whole command, timed and its peak RSS read with
``os.wait4`` (the largest single process of its tree); the data set-up (KING, genotype store, token
features) and the training epoch alone are read from the train log's "data set-up took" and "epoch 0:
training took" lines. ``--ddp-max N``: up to N people the same epoch again with ``trainer=ddp_sim`` (two
processes, gloo), token features computed afresh, each process's own peak memory read from its
"peak memory" line. The growth exponent between two sizes is log(t2 / t1) / log(N2 / N1).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ("import os, subprocess, sys, time; t = time.perf_counter(); "
          "p = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=subprocess.STDOUT); "
          "_, st, ru = os.wait4(p.pid, 0); print(time.perf_counter() - t, ru.ru_maxrss, os.waitstatus_to_exitcode(st))")


def timed(cmd: list, log: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one run of ``cmd`` (output to ``log``); a failure stops the benchmark."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCH, str(log), *map(str, cmd)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    dt, rss, status = out.stdout.split()
    if int(status):
        raise SystemExit(f"failed ({status}), see {log}: {' '.join(map(str, cmd))}")
    return float(dt), int(rss) / 1048576


def growth(rows: dict, key: str, sizes: list[int]) -> str:
    pts = [(n, rows[n][key][0]) for n in sizes if key in rows[n]]
    return ", ".join(f"{math.log(b / a) / math.log(m / n):.2f}" for (n, a), (m, b) in zip(pts, pts[1:])) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000, 30000])
    ap.add_argument("--loci", type=int, default=20000)
    ap.add_argument("--train-max", type=int, default=100000, help="train and analyse up to this many people")
    ap.add_argument("--king-max", type=int, default=30000, help="run the all-pairs KING flags up to this many people")
    ap.add_argument("--ddp-max", type=int, default=0, help="also train with trainer=ddp_sim up to this many people")
    ap.add_argument("--store", default="auto", choices=["auto", "memory", "stream"], help="data.store for training")
    ap.add_argument("--plink2-max", type=int, default=30000, help="run plink2 up to this many people")
    ap.add_argument("--sequences", type=int, default=200, help="training sequences per epoch, at every N")
    ap.add_argument("--out", default="/tmp/seq2king_scale")
    ap.add_argument("--no-analyze", action="store_true", help="train only")
    ap.add_argument("--reuse", action="store_true", help="keep cohorts already simulated in --out (not timed)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plink2 = shutil.which("plink2")
    py, cli = sys.executable, [sys.executable, "-m", "seq2king.cli"]
    rows: dict[int, dict] = {}
    for n in args.sizes:
        r = rows[n] = {}
        pre = out / f"c{n}"
        if not (args.reuse and Path(f"{pre}.bed").exists()):
            r["simulate"] = timed([*cli, "simulate", "--model", "WithinContinent26", "--samples", n, "--loci",
                                   args.loci, "--out", pre], out / f"c{n}.simulate.log")
        if n <= args.king_max:
            king_stages(r, n, pre, out, cli, plink2, args)
        if n <= args.train_max:
            run = out / f"run{n}_{args.store}"
            if n <= args.ddp_max:  # compare like with like: token features computed afresh in both runs
                for f in (out / "cache").rglob("features-*"):
                    f.unlink()
            r["train (set-up + 1 epoch)"] = timed(
                [py, "train.py", "data=plink", f"data.bfile={pre}", f"data.labels={pre}.labels.tsv",
                 f"data.cache_dir={out / 'cache'}", f"data.sequences_per_epoch={args.sequences}",
                 f"data.store={args.store}", "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run}"],
                out / f"run{n}_{args.store}.train.log")
            text = (out / f"run{n}_{args.store}.train.log").read_text()
            for key, pat in (("KING to the panel", r"KING to the panel \(.*\) took ([0-9.]+) s"),
                             ("data set-up", r"data set-up took ([0-9.]+) s"),
                             ("training epoch", r"epoch 0: training took ([0-9.]+) s")):
                hit = re.search(pat, text)
                if hit:
                    r[key] = (float(hit.group(1)), None)
            r["mode"] = "stream" if "on demand from a genotype store" in text else "memory"
            if n <= args.ddp_max:  # the same epoch on two processes, features computed afresh as above
                for f in (out / "cache").rglob("features-*"):
                    f.unlink()
                log = out / f"run{n}_{args.store}_ddp.train.log"
                r["train, DDP 2 processes"] = timed(
                    [py, "train.py", "data=plink", f"data.bfile={pre}", f"data.labels={pre}.labels.tsv",
                     f"data.cache_dir={out / 'cache'}", f"data.sequences_per_epoch={args.sequences}",
                     f"data.store={args.store}", "trainer=ddp_sim", "trainer.max_epochs=1", "logger=none",
                     f"hydra.run.dir={run}_ddp"], log)
                peaks = [float(x) for x in re.findall(r"peak memory ([0-9.]+) GB", log.read_text())]
                r["DDP per-process peaks"] = ", ".join(f"{p:.2f} GB" for p in peaks)
            if not args.no_analyze:
                r["analyze"] = timed([py, "analyze.py", f"run_dir={run}", "analysis.permutations=100",
                                      "analysis.bootstrap=100", "analysis.umap=false", f"hydra.run.dir={run}/alog"],
                                     out / f"run{n}_{args.store}.analyze.log")
        print(n, {k: (fmt(v) if isinstance(v, tuple) else v) for k, v in r.items()}, flush=True)
    stages = ["simulate", "king filter", "plink2 filter", "king cutoff", "plink2 cutoff", "KING to the panel",
              "data set-up",
              "training epoch", "train (set-up + 1 epoch)", "train, DDP 2 processes", "analyze"]
    lines = ["| stage | " + " | ".join(f"N = {n:,}" for n in args.sizes) + " | growth exponent |",
             "|---|" + "---|" * len(args.sizes) + "---|"]
    for st in stages:
        cells = [fmt(rows[n][st]) if st in rows[n] else "-" for n in args.sizes]
        lines.append(f"| {st} | " + " | ".join(cells) + f" | {growth(rows, st, args.sizes)} |")
    lines.append("| DDP: each process's peak | " + " | ".join(str(rows[n].get("DDP per-process peaks", "-"))
                                                       for n in args.sizes) + " | |")
    lines.append("| KING for training | " + " | ".join(str(rows[n].get("mode", "-")) for n in args.sizes) + " | |")
    for what in ("filter", "cutoff"):
        ratio = [f"{rows[n][f'king {what}'][0] / rows[n][f'plink2 {what}'][0]:.2f}" if f"plink2 {what}" in rows[n]
                 else "-" for n in args.sizes]
        lines.append(f"| ours / plink2, {what} | " + " | ".join(ratio) + " | |")
    lines.append("| outputs identical to plink2 | " + " | ".join(str(rows[n].get("identical", "-")) for n in args.sizes)
                 + " | |")
    text = "\n".join(lines)
    (out / "scale.md").write_text(text + "\n")
    print(text)
    return 0


def fmt(v: tuple) -> str:
    return f"{v[0]:.1f} s" if v[1] is None else f"{v[0]:.1f} s, {v[1]:.2f} GB"


def king_stages(r: dict, n: int, pre: Path, out: Path, cli: list, plink2: str | None, args) -> None:
    r["king filter"] = timed([*cli, "king", "--bfile", pre, "--table-only", "--king-table-filter", "0.0442",
                              "--out", out / f"ours{n}"], out / f"ours{n}.log")
    r["king cutoff"] = timed([*cli, "king", "--bfile", pre, "--king-cutoff", "0.0442", "--out", out / f"ours{n}"],
                             out / f"ours{n}.cutoff.log")
    if plink2 and n <= args.plink2_max:
        r["plink2 filter"] = timed([plink2, "--bfile", pre, "--make-king-table", "--king-table-filter", "0.0442",
                                    "--threads", "2", "--out", out / f"ref{n}"], out / f"ref{n}.log")
        r["plink2 cutoff"] = timed([plink2, "--bfile", pre, "--king-cutoff", "0.0442", "--threads", "2",
                                    "--out", out / f"ref{n}"], out / f"ref{n}.cutoff.log")
        same = (out / f"ours{n}.kin0").read_bytes() == (out / f"ref{n}.kin0").read_bytes()
        same &= all((out / f"ours{n}{e}").read_bytes() == (out / f"ref{n}{e}").read_bytes()
                    for e in (".king.cutoff.in.id", ".king.cutoff.out.id"))
        r["identical"] = same


if __name__ == "__main__":
    sys.exit(main())

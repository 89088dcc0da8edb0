"""How each stage grows with the number of people: wall time and peak memory, with plink2 beside KING.

    .venv/bin/python benchmarks/scale.py --sizes 2500 10000 30000 --loci 20000 --out /tmp/scale
    .venv/bin/python benchmarks/scale.py --sizes 2500 10000 --train-max 10000

For each N: ``seq2king simulate --model WithinContinent26 --samples N --loci LOCI``; the relatives of a
biobank QC, ``seq2king king --table-only --king-table-filter 0.0442`` against ``plink2 --make-king-table
--king-table-filter 0.0442 --threads 2`` on the same .bed (the two .kin0 files are checked byte for byte;
the ratio is ours / plink2's, below 1 is faster), and ``--king-cutoff 0.0442`` against plink2's (the ID
lists checked); then, up to ``--train-max`` people, one epoch of ``python train.py data=plink`` (the same
sequences per epoch at every N: ``data.sequences_per_epoch``) and ``python analyze.py``. Every figure is
one run of a whole command, timed and its peak RSS read with ``os.wait4`` (the largest single process of
its tree). The growth exponent between two sizes is log(t2 / t1) / log(N2 / N1).

Training and analysis still hold N x N arrays (the cohort's KING matrix, the genotype kernel): above
``--train-max`` they are not run, and the table says so.
"""

from __future__ import annotations

import argparse
import math
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
    ap.add_argument("--train-max", type=int, default=10000, help="train and analyse up to this many people")
    ap.add_argument("--plink2-max", type=int, default=30000, help="run plink2 up to this many people")
    ap.add_argument("--sequences", type=int, default=200, help="training sequences per epoch, at every N")
    ap.add_argument("--out", default="/tmp/seq2king_scale")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plink2 = shutil.which("plink2")
    py, cli = sys.executable, [sys.executable, "-m", "seq2king.cli"]
    rows: dict[int, dict] = {}
    for n in args.sizes:
        r = rows[n] = {}
        pre = out / f"c{n}"
        r["simulate"] = timed([*cli, "simulate", "--model", "WithinContinent26", "--samples", n, "--loci",
                               args.loci, "--out", pre], out / f"c{n}.simulate.log")
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
        if n <= args.train_max:
            run = out / f"run{n}"
            r["train (set-up + 1 epoch)"] = timed(
                [py, "train.py", "data=plink", f"data.bfile={pre}", f"data.labels={pre}.labels.tsv",
                 f"data.cache_dir={out / 'cache'}", f"data.sequences_per_epoch={args.sequences}",
                 "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run}"], out / f"run{n}.train.log")
            r["analyze"] = timed([py, "analyze.py", f"run_dir={run}", "analysis.permutations=100",
                                  "analysis.bootstrap=100", f"hydra.run.dir={run}/alog"], out / f"run{n}.analyze.log")
        print(n, {k: (f"{v[0]:.1f} s, {v[1]:.2f} GB" if isinstance(v, tuple) else v) for k, v in r.items()}, flush=True)
    stages = ["simulate", "king filter", "plink2 filter", "king cutoff", "plink2 cutoff", "train (set-up + 1 epoch)",
              "analyze"]
    lines = ["| stage | " + " | ".join(f"N = {n:,}" for n in args.sizes) + " | growth exponent |",
             "|---|" + "---|" * len(args.sizes) + "---|"]
    for st in stages:
        cells = [f"{rows[n][st][0]:.1f} s, {rows[n][st][1]:.2f} GB" if st in rows[n] else
                 ("not run: N x N set-up (issue 18)" if st.startswith(("train", "analyze")) else "-")
                 for n in args.sizes]
        lines.append(f"| {st} | " + " | ".join(cells) + f" | {growth(rows, st, args.sizes)} |")
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


if __name__ == "__main__":
    sys.exit(main())

"""Time ``seq2king king`` against ``plink2 --make-king`` on the same .bed, same output.

    .venv/bin/python benchmarks/king_vs_plink2.py [--n 2500] [--m 20000 100000] [--repeat 2]
    .venv/bin/python benchmarks/king_vs_plink2.py --n 10000 --m 20000 --memory-gb 1

With ``--memory-gb``, each command also runs with its memory bound (``seq2king
--memory-gb X``, ``plink2 --memory X*1024``) and the peak resident memory of every
run is reported (``os.wait4``'s ``ru_maxrss`` of that child alone).

Both are whole commands run the same way (plink2 with --threads 2, triangle bin),
best of --repeat runs each; the outputs are checked to be byte-identical. Prints
our time / plink2's time: below 1.0 means seq2king is faster.

A second column times seq2king inside an already running Python (read the .bed,
compute, write the same file), which is what a pipeline that calls the library
pays: a fresh ``seq2king`` process spends about 1.5 s starting Python and
importing torch before it reads anything.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bed_reader import to_bed


def make_bed(prefix: Path, n: int, m: int, missing: float, seed: int = 0) -> None:
    """Hardy-Weinberg genotypes with allele frequencies U(0.01, 0.5), written via bed-reader."""
    rng = np.random.default_rng(seed)
    g = np.empty((n, m), dtype=np.int8)
    for s in range(0, m, 10000):
        e = min(s + 10000, m)
        p = rng.uniform(0.01, 0.5, e - s)
        g[:, s:e] = (rng.random((n, e - s)) < p) + (rng.random((n, e - s)) < p)
        if missing:
            g[:, s:e][rng.random((n, e - s)) < missing] = -127
    to_bed(f"{prefix}.bed", g, properties={"chromosome": ["1"] * m, "bp_position": np.arange(1, m + 1)})


# Started from a small process: a child forked from this one (which holds the test data)
# would report this process's size as its own peak.
LAUNCH = ("import os, subprocess, sys, time; t = time.perf_counter(); "
          "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
          "_, st, ru = os.wait4(p.pid, 0); print(time.perf_counter() - t, ru.ru_maxrss, st)")


def timed(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one run of ``cmd``, from ``os.wait4``."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCH, *cmd], capture_output=True, text=True, check=True)
    dt, rss, status = out.stdout.split()
    if int(status):
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return float(dt), int(rss) / 1024


def best_time(cmd: list[str], repeat: int) -> float:
    return min(timed(cmd)[0] for _ in range(repeat))


def in_process_time(prefix: Path, out: Path, repeat: int, device: str) -> float:
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.king import KingEngine
    from seq2king.genetics.kingio import write_king_bands

    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        src = BedSource(prefix)
        write_king_bands(KingEngine(src, device=device, progress=False).run(), out, src.samples)
        times.append(time.perf_counter() - t)
    return min(times)


def memory_runs(plink2: str, s2k: str, prefix: Path, d: Path, args) -> list[tuple[float, float]]:
    """(seconds, peak MiB) of seq2king and plink2, each as is and with the memory bound."""
    mb = int(args.memory_gb * 1024)
    base = ["--bfile", str(prefix)]
    runs = [
        [s2k, "king", *base, "--out", str(d / "s2k_mem"), "--device", args.device],
        [s2k, "king", *base, "--out", str(d / "s2k_mem"), "--device", args.device, "--memory-gb", str(args.memory_gb)],
        [plink2, *base, "--make-king", "triangle", "bin", "--threads", "2", "--out", str(d / "p_mem")],
        [plink2, *base, "--make-king", "triangle", "bin", "--threads", "2", "--memory", str(mb), "--out", str(d / "p_mem")],
    ]
    return [timed(cmd) for cmd in runs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--m", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="also run both with this memory bound and report peak RSS of every run")
    args = ap.parse_args()
    plink2 = shutil.which("plink2")
    if plink2 is None:
        print("plink2 not found: apt-get install plink2", file=sys.stderr)
        return 1
    s2k = str(Path(sys.executable).with_name("seq2king"))
    rows, mem = [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for m in args.m:
            for missing in (0.0, 0.01):
                prefix = d / f"n{args.n}_m{m}_miss{missing}"
                make_bed(prefix, args.n, m, missing)
                t_p = best_time([plink2, "--bfile", str(prefix), "--make-king", "triangle", "bin",
                                 "--threads", "2", "--out", str(d / "plink2")], args.repeat)
                t_s = best_time([s2k, "king", "--bfile", str(prefix), "--out", str(d / "s2k"),
                                 "--device", args.device], args.repeat)
                t_i = in_process_time(prefix, d / "lib", args.repeat, args.device)
                same = ((d / "plink2.king.bin").read_bytes() == (d / "s2k.king.bin").read_bytes()
                        == (d / "lib.king.bin").read_bytes())
                rows.append((args.n, m, missing, t_s, t_i, t_p, same))
                print(f"N={args.n} M={m:>7} missing={missing:.0%}: seq2king {t_s:6.2f} s (in-process {t_i:5.2f} s)  "
                      f"plink2 {t_p:6.2f} s  ratio {t_s / t_p:4.2f} (in-process {t_i / t_p:4.2f})  identical={same}",
                      flush=True)
                if args.memory_gb:
                    mem.append((args.n, m, missing, *memory_runs(plink2, s2k, prefix, d, args)))
    if mem:
        print(f"\n| N | M | missing | seq2king (s, MiB) | seq2king --memory-gb {args.memory_gb:g} | plink2 | "
              f"plink2 --memory {int(args.memory_gb * 1024)} |")
        print("|---|---|---|---|---|---|---|")
        for n, m, miss, *runs in mem:
            print(f"| {n} | {m} | {miss:.0%} | " + " | ".join(f"{t:.2f} s, {r:.0f}" for t, r in runs) + " |")
    print("\n| N | M | missing | seq2king command (s) | in-process (s) | plink2 (s) | ratio | ratio in-process | identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, m, miss, ts, ti, tp, same in rows:
        print(f"| {n} | {m} | {miss:.0%} | {ts:.2f} | {ti:.2f} | {tp:.2f} | {ts / tp:.2f} | {ti / tp:.2f} | {same} |")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

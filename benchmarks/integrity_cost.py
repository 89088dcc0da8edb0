"""What proving the caches costs: content digests and checksums against the data set-up they guard.

    .venv/bin/python benchmarks/integrity_cost.py --samples 100000 --loci 20000 --out /tmp/integrity
    .venv/bin/python benchmarks/integrity_cost.py --bfile PREFIX --out /tmp/integrity

Without ``--bfile`` the cohort is ``seq2king simulate --model WithinContinent26 --samples N --loci LOCI``
(kept in ``--out`` for the next run). Then, in one process, with a fresh cache: the streamed data set-up
(``data.store=stream``, default settings: genotype store, KING to the panel, genomic relationship, PCs) from
nothing (cold), and again from its cache (warm), each timed whole; and every integrity step alone, timed on the
same files: the genotypes' content digest (XXH3-128 of every byte, the cache key), its memoised lookup, the
store's checksum (written at build, checked at every open), the features' checksum; plus BLAKE2b and SHA-256
over the .bed for the choice of hash. Prints each as seconds and as a share of the set-up it belongs to.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clock(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def stdlib_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--loci", type=int, default=20000)
    ap.add_argument("--bfile", help="a PLINK prefix to use instead of simulating")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from seq2king.data.cohort import content_digests, genotype_files
    from seq2king.data.datamodule import Seq2KingDataModule
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.store import GenotypeStore
    from seq2king.integrity import file_digest

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bfile = args.bfile
    if bfile is None:
        bfile = str(out / f"c{args.samples}")
        if not Path(bfile + ".bed").exists():
            subprocess.run([sys.executable, "-m", "seq2king.cli", "simulate", "--model", "WithinContinent26",
                            "--samples", str(args.samples), "--loci", str(args.loci), "--out", bfile],
                           check=True, cwd=ROOT)
    files = genotype_files("plink", bfile)[1]
    cache = out / "cache"
    shutil.rmtree(cache, ignore_errors=True)

    def setup():
        dm = Seq2KingDataModule(source="plink", bfile=bfile, cache_dir=str(cache), store="stream")
        dm.setup()
        return dm

    cold, dm = clock(setup)
    warm, _ = clock(setup)
    store = dm.cohort.store
    entry = Path(store.prefix).parent
    features = sorted(entry.glob("features-*.npy"))[-1]
    size = {p.name: p.stat().st_size for p in [*files, store.path, features]}
    memo = out / "memo"
    shutil.rmtree(memo, ignore_errors=True)
    steps = {
        "genotypes' digest (cache key, first time)": clock(lambda: content_digests(files, memo))[0],
        "genotypes' digest, memoised": clock(lambda: content_digests(files, memo))[0],
        "store checksum": clock(lambda: file_digest(store.path))[0],
        "store stats checksum": clock(lambda: file_digest(Path(store.prefix + ".store.stats.npy")))[0],
        "features checksum": clock(lambda: file_digest(features))[0],
        "store check at open (manifest, people, every byte)":
            clock(lambda: GenotypeStore.matches(store.prefix, BedSource(bfile), dm.cohort.digests and
                                                list(dm.cohort.digests.values())))[0],
    }
    bed = files[0]
    peers = {algo: clock(lambda a=algo: stdlib_digest(bed, a))[0] for algo in ("blake2b", "sha256")}
    xxh = clock(lambda: file_digest(bed))[0]

    n = len(dm.cohort.ids)
    print(f"{n:,} people, {store.m:,} KING variants; .bed {size[bed.name] / 1e6:,.0f} MB, store "
          f"{size[store.path.name] / 1e6:,.0f} MB, features {size[features.name] / 1e6:,.0f} MB")
    print(f"data set-up, streamed: cold {cold:.1f} s, warm (from the cache) {warm:.1f} s")
    for name, dt in steps.items():
        print(f"  {name:52s} {dt:7.2f} s")
    cold_work = (steps["genotypes' digest (cache key, first time)"] + steps["store checksum"]
                 + steps["store stats checksum"] + steps["features checksum"])
    warm_work = (steps["genotypes' digest, memoised"] + steps["store check at open (manifest, people, every byte)"]
                 + steps["features checksum"])
    print(f"integrity work in a cold set-up: {cold_work:.2f} s = {100 * cold_work / cold:.1f}% of it "
          "(digest the genotypes, checksum the store and features once written)")
    print(f"integrity work in a warm set-up: {warm_work:.2f} s = {100 * warm_work / warm:.1f}% of it "
          "(memoised digest, every byte of the store and features checked)")
    print(f"hash over the {size[bed.name] / 1e6:,.0f} MB .bed: XXH3-128 {xxh:.2f} s, "
          + ", ".join(f"{a} {t:.2f} s ({t / xxh:.1f}x)" for a, t in peers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the KING acceptance fixture (committed; re-run only to change it).

    .venv/bin/python tests/data/make_king_fixture.py

Writes tests/data/king_fixture.{bed,bim,fam} plus .pgen/.pvar/.psam and .vcf.gz
(converted by plink2), a small multi-allelic VCF, and plink2's own outputs as
golden files (tests/data/golden/). The cohort: 60 simulated founders
(msprime, AmericanAdmixture_4B18), a duplicate, two parent-offspring trios
that make a full-sibling pair, one person with no heterozygous calls,
~1% missing calls, and variants on chromosomes 0, X, Y, XY and MT.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
from bed_reader import to_bed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))
from seq2king.genetics.simulate import simulate  # noqa: E402
from seq2king.genetics.genotypes import BedSource  # noqa: E402


def main():
    tmp = HERE / "_founders"
    simulate(tmp, samples=60, length=3e6, seed=7, maf=0.05, workers=1, progress=False)
    src = BedSource(tmp)
    g = src.read_all()  # (60, m)
    rng = np.random.default_rng(11)
    n0, m = g.shape

    def child(p, q):
        a = (rng.random(m) < g[p] / 2).astype(np.int8)
        b = (rng.random(m) < g[q] / 2).astype(np.int8)
        return a + b

    rows, ids = [g[i] for i in range(n0)], list(src.samples.iid)
    rows.append(g[0].copy()); ids.append("DUP_of_" + ids[0])          # duplicate
    rows.append(child(1, 2)); ids.append("CHILD_1x2_a")               # parent-offspring
    rows.append(child(1, 2)); ids.append("CHILD_1x2_b")               # full sibling of the above
    hom = g[3].copy(); hom[hom == 1] = 0; rows.append(hom); ids.append("NOHET")  # no heterozygous calls
    geno = np.vstack(rows).astype(np.int8)
    geno[rng.random(geno.shape) < 0.01] = -127                          # ~1% missing

    # Contiguous chromosome blocks in plink order, including the ones KING drops.
    fractions = {"1": 0.3, "2": 0.3, "0": 0.1, "X": 0.08, "Y": 0.07, "XY": 0.07, "MT": 0.08}
    edges = np.concatenate([[0], np.cumsum(list(fractions.values()))])
    edges = (edges / edges[-1] * m).round().astype(int)
    chrom = np.empty(m, dtype=object)
    for lab, a, b in zip(fractions, edges[:-1], edges[1:]):
        chrom[a:b] = lab
    pos = np.arange(1, m + 1) * 100
    prefix = HERE / "king_fixture"
    to_bed(f"{prefix}.bed", geno, properties={
        "fid": ["F" + x.split("_")[0] for x in ids], "iid": ids,
        "chromosome": list(chrom), "sid": [f"v{i}" for i in range(m)], "bp_position": pos,
        "allele_1": ["A"] * m, "allele_2": ["G"] * m,
    })
    for f in tmp.parent.glob("_founders*"):
        f.unlink()
    run = lambda *a: subprocess.run(["plink2", "--silent", *a], check=True)  # noqa: E731
    run("--bfile", str(prefix), "--make-pgen", "--out", str(prefix))
    run("--bfile", str(prefix), "--export", "vcf-4.2", "bgz", "id-paste=iid", "--out", str(prefix))
    gold = HERE / "golden"
    gold.mkdir(exist_ok=True)
    run("--bfile", str(prefix), "--make-king", "triangle", "bin", "--make-king-table", "counts",
        "--out", str(gold / "king_fixture"))
    for f in HERE.glob("king_fixture*.log"):
        f.unlink()
    for f in gold.glob("*.log"):
        f.unlink()
    multiallelic_vcf()


def multiallelic_vcf():
    """A VCF with multi-allelic sites, haploid calls and missing calls."""
    rng = np.random.default_rng(5)
    n, m = 12, 400
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1>", "##contig=<ID=X>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{i}" for i in range(n))]
    for k in range(m):
        n_alt = 1 if k % 4 else 2
        alt = ",".join(["C", "T"][:n_alt])
        calls = []
        for i in range(n):
            if rng.random() < 0.03:
                calls.append("./.")
            elif k % 50 == 7:
                calls.append(str(rng.integers(0, n_alt + 1)))  # haploid call
            else:
                p = rng.random() * 0.8 + 0.1
                a, b = (rng.random(2) < p) * rng.integers(1, n_alt + 1, 2)
                calls.append(f"{a}/{b}")
        chrom = "X" if k >= m - 20 else "1"
        lines.append(f"{chrom}\t{k + 1}\tm{k}\tA\t{alt}\t.\t.\t.\tGT\t" + "\t".join(calls))
    path = HERE / "multiallelic.vcf"
    path.write_text("\n".join(lines) + "\n")
    gold = HERE / "golden"
    subprocess.run(["plink2", "--silent", "--vcf", str(path), "--make-king", "triangle", "bin",
                    "--out", str(gold / "multiallelic")], check=True)
    for f in gold.glob("*.log"):
        f.unlink()


if __name__ == "__main__":
    main()

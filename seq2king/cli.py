"""The ``seq2king`` command: ``simulate``, ``king``, ``trait`` and ``inspect``.

Bad input or a file-system fault (a read-only folder, a folder where a file
goes, a full disk) prints one line, ``seq2king: error: ...``, and exits with
status 2; no traceback and no partial output file. SIGTERM removes the
temporaries and exits 143.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

from seq2king import __version__
from seq2king.errors import EXIT_TERMINATED, InputError, Terminated, error_line, raise_on_sigterm
from seq2king.fileio import AtomicFiles, atomic_files
from seq2king.genetics.genotypes import open_genotypes, select_samples
from seq2king.genetics.labels import read_labels
from seq2king.genetics.simulate import simulate
from seq2king.genetics.traits import TraitSpec, simulate_trait, write_trait

# KING's engine, its file formats and the relatives' pruning import torch (over a second): they are imported
# inside the subcommands that use them (king, inspect), so that --help, simulate and trait start without it


def _add_simulate(sub):
    p = sub.add_parser(
        "simulate", help="simulate a cohort (PLINK .bed/.bim/.fam + labels.tsv)",
        description="Simulate genotypes offline with msprime + stdpopsim and write PLINK files "
        "plus PREFIX.labels.tsv (sample, population, superpopulation).",
    )
    p.add_argument("--model", default="AmericanAdmixture_4B18",
                   help="stdpopsim HomSap model id, a demes .yaml file, FiveContinents, FiveContinentsSubpopulations "
                        "WithinContinent26 (26 populations, Balding-Nichols) or TwoPopulations (two drifted populations, the audit scenario; default: %(default)s)")
    p.add_argument("--samples", type=int, default=1000, help="number of people (default: %(default)s)")
    p.add_argument("--length", type=float, default=20e6, help="base pairs to simulate (default: %(default).0f)")
    p.add_argument("--seed", type=int, default=1, help="random seed; same seed, same bytes (default: %(default)s)")
    p.add_argument("--maf", type=float, default=0.01, help="minimum minor allele frequency (default: %(default)s)")
    p.add_argument("--chunk-bp", type=float, default=5e6, help="independent chunk size (default: %(default).0f)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--mutation-rate", type=float, default=None, help="override the model's mutation rate")
    p.add_argument("--recombination-rate", type=float, default=None, help="override the flat recombination rate")
    p.add_argument("--aims", type=int, default=None,
                   help="keep only this many variants, those with the highest between-superpopulation Fst "
                        "(MAF >= 0.03): an ancestry-informative panel")
    p.add_argument("--aims-spacing", type=float, default=0.0,
                   help="with --aims: at least this many bp between chosen variants (default: %(default).0f)")
    p.add_argument("--loci", type=int, default=10_000,
                   help="WithinContinent26, TwoPopulations: unlinked loci to draw (default: %(default)s)")
    p.add_argument("--within-f", type=float, default=None,
                   help="WithinContinent26: median drift (Balding-Nichols F) of a population from its continent "
                        "(default: 0.0025, calibrated to 1000 Genomes' genome-wide differences)")
    p.add_argument("--between-shrink", type=float, default=None,
                   help="WithinContinent26: continental frequencies pulled towards their mean by this factor "
                        "(default: 0.92)")
    p.add_argument("--out", required=True, help="output prefix")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args) -> int:
    t0 = time.perf_counter()
    info = simulate(
        args.out, model=args.model, samples=args.samples, length=args.length, seed=args.seed,
        maf=args.maf, chunk_bp=args.chunk_bp, workers=args.workers,
        mutation_rate=args.mutation_rate, recombination_rate=args.recombination_rate,
        aims=args.aims, aims_spacing=args.aims_spacing, loci=args.loci, within_f=args.within_f,
        between_shrink=args.between_shrink,
    )
    groups = ", ".join(f"{k} {v}" for k, v in info["samples"].items())
    print(f"simulated {info['model']}: {sum(info['samples'].values())} people ({groups}), "
          f"{info['variants']} variants over {info['length']:,} bp in {time.perf_counter() - t0:.1f} s")
    print("wrote " + " ".join(info["files"]))
    return 0


def _add_king(sub):
    p = sub.add_parser(
        "king", help="KING-robust kinship, byte-identical to plink2 --make-king",
        description="Compute plink2's KING-robust kinship for every pair and write OUT.king(.bin) "
        "and OUT.king.id exactly as plink2 --make-king does (OUT.kin0 with --table).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bfile", help="PLINK 1 prefix (.bed/.bim/.fam)")
    src.add_argument("--pfile", help="PLINK 2 prefix (.pgen/.pvar/.psam)")
    src.add_argument("--vcf", help="VCF or BCF file (bgzipped or not)")
    p.add_argument("--out", required=True, help="output prefix")
    # plink2 reads "--king-table-filter -1e9" as a number; argparse's own pattern stops at "-1.5"
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
    p.add_argument("--shape", default="triangle", choices=["triangle", "square", "square0"],
                   help="matrix shape (default: %(default)s)")
    p.add_argument("--encoding", default="bin", choices=["bin", "bin4", "text"],
                   help="bin = float64, bin4 = float32, text = .king (default: %(default)s)")
    p.add_argument("--table", action="store_true", help="also write OUT.kin0 (plink2 --make-king-table)")
    p.add_argument("--table-only", action="store_true",
                   help="write OUT.kin0 alone, no matrix (plink2 --make-king-table without --make-king)")
    p.add_argument("--king-table-filter", type=float, default=None, metavar="MIN",
                   help="OUT.kin0 lists only pairs with kinship >= MIN (plink2's flag; implies --table)")
    p.add_argument("--degree", action="store_true",
                   help="add KING's relationship class to OUT.kin0 (INFTYPE: Dup/MZ, PO, FS, 2nd, 3rd, UN; implies --table)")
    p.add_argument("--po-ibs0", type=float, default=None, metavar="P",
                   help="--degree: first-degree pairs with IBS0 below this share of markers are PO, others FS "
                   "(default: 0.0012)")
    p.add_argument("--king-cutoff", nargs="+", default=None, metavar="[PREFIX] MAX",
                   help="write OUT.king.cutoff.in.id / .out.id: plink2's maximal set of people with no pair's "
                   "kinship above MAX (0.0442: no third-degree relatives or closer); no matrix or table. "
                   "With PREFIX, the pairs come from an existing PREFIX.king.bin + PREFIX.king.id of the "
                   "same people (as plink2 reads them) instead of being computed")
    p.add_argument("--parallel", nargs=2, type=int, metavar=("K", "N"), default=None,
                   help="compute part K of N (plink2's split of the triangle into parts of equal pair counts): "
                   "OUT.king.bin.K / OUT.kin0.K; the N parts concatenated in order are the one-run file")
    p.add_argument("--submit", type=int, default=None, metavar="N",
                   help="run the N parts of --parallel as a job array through submitit (SLURM when sbatch is "
                   "on PATH, else local processes), then join them into the one-run files")
    p.add_argument("--submit-cluster", default=None, choices=["slurm", "local", "debug"],
                   help="--submit: submitit's executor (default: SLURM if available, else local)")
    p.add_argument("--slurm-partition", default=None, help="--submit on SLURM: the partition")
    p.add_argument("--slurm-time", type=int, default=240, help="--submit: minutes per part (default: %(default)s)")
    p.add_argument("--cpus-per-task", type=int, default=None, help="--submit: cores per part (default: all on one node)")
    p.add_argument("--keep", metavar="FILE", help="only the people listed in FILE (plink2 --keep: IID, or FID IID)")
    p.add_argument("--remove", metavar="FILE", help="leave out the people listed in FILE (plink2 --remove)")
    p.add_argument("--table-proportions", action="store_true",
                   help="HETHET/IBS0 in .kin0 as proportions (plink2's default) instead of counts")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (default: %(default)s)")
    p.add_argument("--block-variants", type=int, default=8192, help="variants per product (default: %(default)s)")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="memory for pair counts; more people take several passes (default: 8 on CPU, 60%% of free GPU)")
    p.set_defaults(func=_run_king)


def _wants_table(args) -> bool:
    """A .kin0 is written: asked for, or implied by --table-only, --degree or --king-table-filter."""
    return bool(args.table or args.table_only or args.degree or args.king_table_filter is not None)


def _output_suffixes(args) -> list[str]:
    """The files a KING run writes after ``--out`` (the .king.id aside)."""
    suffixes = [".kin0"] if _wants_table(args) else []
    if not args.table_only:
        suffixes.append(".king" if args.encoding == "text" else ".king.bin")
    return suffixes


def _king_part(argv: list[str]) -> int:
    """One ``--parallel K N`` part in a submitit job (a module-level function, so it pickles)."""
    rc = _main(argv)
    if rc:
        raise RuntimeError(f"seq2king {' '.join(argv)} exited {rc}")
    return rc


def _submit_king(args, argv: list[str]) -> int:
    """``--submit N``: the N parts of ``--parallel`` as one submitit job array, then ``cat`` into one file each."""
    import submitit

    n = args.submit
    if n < 1:
        raise InputError(f"--submit {n}: need at least 1 part")
    if args.parallel is not None or args.king_cutoff is not None or args.shape != "triangle":
        raise InputError("--submit splits the triangle itself: leave out --parallel, --king-cutoff and --shape")
    # what every part would find wrong, found once here before anything is submitted: the genotypes
    # (a truncated .bed, a bad --keep file) and a folder the joined files cannot be written to
    source = select_samples(open_genotypes(args.bfile, args.pfile, args.vcf), args.keep, args.remove)
    if source.n_samples < 2:
        raise InputError(f"--submit: {source.n_samples} people loaded; KING needs at least 2")
    suffixes = _output_suffixes(args)
    AtomicFiles(*(f"{args.out}{sfx}" for sfx in suffixes)).discard()
    folder = Path(f"{args.out}.submitit")
    ex = submitit.AutoExecutor(folder=folder, cluster=args.submit_cluster)
    params = {"timeout_min": args.slurm_time, "name": "seq2king-king"}
    if args.cpus_per_task:
        params["cpus_per_task"] = args.cpus_per_task
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    ex.update_parameters(**params)
    parts = [[*argv, "--parallel", str(k), str(n)] for k in range(1, n + 1)]
    jobs = ex.map_array(_king_part, parts)
    print(f"submitted {n} parts ({ex.cluster}): {', '.join(j.job_id for j in jobs)}; logs in {folder}", flush=True)
    for k, job in enumerate(jobs, 1):
        try:
            job.result()
        except Exception as e:
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InputError(f"--submit: part {k} of {n} failed ({last}); its log is in {folder}") from None
    for sfx in suffixes:
        pieces = [Path(f"{args.out}{sfx}.{k}") for k in range(1, n + 1)]
        with atomic_files(f"{args.out}{sfx}") as (tmp,):
            with open(tmp, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 24)
        for piece in pieces:
            piece.unlink()
    print("wrote " + " ".join(f"{args.out}{sfx}" for sfx in suffixes), flush=True)
    return 0


def _id_keys(ids) -> list[tuple[str, str, str]]:
    """``(FID, IID, SID)`` of each person, as plink2 matches sample IDs (a missing FID or SID is "0")."""
    fid = ids.fid or ["0"] * len(ids.iid)
    sid = ids.sid or ["0"] * len(ids.iid)
    return [(str(f), str(i), str(s)) for f, i, s in zip(fid, ids.iid, sid)]


def _cutoff_band(prefix: str, samples):
    """An existing ``PREFIX.king.bin`` (+ ``.king.id``) as one KING band, for ``--king-cutoff PREFIX MAX``:
    its people must be the loaded ones, in order (plink2 reads the matrix of the loaded samples too)."""
    from seq2king.genetics.king import KingBand
    from seq2king.genetics.kingio import king_id_for, read_king, read_king_id

    km = read_king(f"{prefix}.king.bin", check_finite=False)
    given = read_king_id(king_id_for(Path(f"{prefix}.king.bin")))
    if _id_keys(given) != _id_keys(samples):
        raise InputError(f"{prefix}.king.id: its {len(given)} people are not the {len(samples.iid)} loaded "
                         "(plink2 matches FID and IID, in order, after --keep/--remove); make the matrix of "
                         "these people")
    n = len(km.ids)
    return KingBand(0, n, km.values, None, None, None, None, None)


def _run_king(args) -> int:
    from seq2king.genetics.kingio import PO_IBS0

    if args.king_table_filter is not None and not args.king_table_filter <= 0.5:  # nan, inf too
        # plink2 takes any finite kinship up to 0.5 (-1 lists every pair) and refuses the rest
        raise InputError(f"--king-table-filter {args.king_table_filter:g}: must be a kinship of at most 0.5, "
                         "as plink2 requires (0.0442: third degree or closer)")
    if args.submit is not None:
        return _submit_king(args, args.argv)
    t0 = time.perf_counter()
    if args.po_ibs0 is not None and not 0 <= args.po_ibs0 <= 1:
        raise InputError(f"--po-ibs0 {args.po_ibs0}: must be a share between 0 and 1")
    table = _wants_table(args)
    cutoff_prefix = None
    if args.king_cutoff is not None:
        given = args.king_cutoff
        if len(given) > 2:
            raise InputError(f"--king-cutoff {' '.join(given)}: takes MAX or PREFIX MAX")
        cutoff_prefix = given[0] if len(given) == 2 else None
        try:
            args.king_cutoff = float(given[-1])
        except ValueError:
            raise InputError(f"--king-cutoff {' '.join(given)}: {given[-1]!r} is not a number") from None
        if not 0 <= args.king_cutoff < 0.5:
            raise InputError(f"--king-cutoff {args.king_cutoff}: must be in [0, 0.5), as plink2 requires")
        if table or args.shape != "triangle" or args.encoding != "bin":
            raise InputError("--king-cutoff writes only the ID lists; run the matrix or table again with "
                             "--keep OUT.king.cutoff.in.id")
    source = select_samples(open_genotypes(args.bfile, args.pfile, args.vcf), args.keep, args.remove)
    from seq2king.genetics.king import KingEngine
    from seq2king.genetics.kingio import write_king_bands

    rows = part = None
    if args.parallel is not None:
        from seq2king.genetics.king import parallel_rows

        part, parts = args.parallel
        if parts < 1:
            raise InputError(f"--parallel {part} {parts}: N must be at least 1")
        if args.king_cutoff is not None:
            raise InputError("--parallel with --king-cutoff: the cutoff needs every pair at once; run it without --parallel")
        rows = parallel_rows(source.n_samples, part, parts)
    if args.king_cutoff is not None:
        from seq2king.genetics.relatives import prune_related, related_pairs, write_cutoff_ids

        # a folder the lists cannot be written to fails now, not after every pair is computed
        AtomicFiles(f"{args.out}.king.cutoff.in.id", f"{args.out}.king.cutoff.out.id").discard()
        if cutoff_prefix is not None:
            bands = [_cutoff_band(cutoff_prefix, source.samples)]
        else:
            bands = KingEngine(source, device=args.device, block_variants=args.block_variants,
                               memory_bytes=None if args.memory_gb is None else int(args.memory_gb * (1 << 30))).run()
        i, j = related_pairs(bands, args.king_cutoff)
        removed = prune_related(source.n_samples, i, j)
        paths = write_cutoff_ids(args.out, source.samples, removed)
        print(f"--king-cutoff {args.king_cutoff}: {len(i):,} pairs above it; {int(removed.sum())} of "
              f"{source.n_samples} people removed in {time.perf_counter() - t0:.1f} s")
        print("wrote " + " ".join(paths))
        return 0
    engine = KingEngine(
        source, device=args.device, block_variants=args.block_variants,
        memory_bytes=None if args.memory_gb is None else int(args.memory_gb * (1 << 30)),
        with_counts=table, rows=rows,
    )
    paths = write_king_bands(
        engine.run(), args.out, source.samples, shape=args.shape, encoding=args.encoding,
        table=table, table_counts=not args.table_proportions, matrix=not args.table_only,
        table_min=args.king_table_filter, degree=args.degree,
        po_ibs0=PO_IBS0 if args.po_ibs0 is None else args.po_ibs0, part=part,
    )
    n = source.n_samples
    pairs = n * (n - 1) // 2 if rows is None else (rows[1] * (rows[1] - 1) - rows[0] * (rows[0] - 1)) // 2
    where = "" if rows is None else f", rows {rows[0] + 1}-{rows[1]} (part {part} of {args.parallel[1]})"
    print(f"KING-robust for {n} people ({pairs:,} pairs{where}) in {time.perf_counter() - t0:.1f} s")
    print("wrote " + " ".join(str(p) for p in paths))
    return 0


def _add_trait(sub):
    p = sub.add_parser(
        "trait", help="add a simulated trait to a cohort (PREFIX.pheno.tsv + PREFIX.causal.tsv)",
        description="Simulate a trait on a cohort's own genotypes (liability threshold: causal SNPs at "
        "heritability h2, environment, per-population shifts), optionally with case ascertainment skewed "
        "by population, for auditing SNP -> trait models for the ancestry shortcut. Writes OUT.pheno.tsv "
        "(FID IID trait; binary: 1 case, 0 control, people not ascertained left out) and OUT.causal.tsv.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bfile", help="PLINK 1 prefix (.bed/.bim/.fam)")
    src.add_argument("--pfile", help="PLINK 2 prefix (.pgen/.pvar/.psam)")
    src.add_argument("--vcf", help="VCF or BCF file")
    p.add_argument("--labels", help="labels TSV for --shift/--ascertain (default: PREFIX.labels.tsv if present)")
    p.add_argument("--label-column", default="population", help="population column (default: %(default)s)")
    p.add_argument("--h2", type=float, default=0.7, help="heritability on the liability scale (default: %(default)s)")
    p.add_argument("--causal", type=int, default=500, help="causal SNPs, drawn at random (default: %(default)s)")
    p.add_argument("--quantitative", action="store_true", help="write the liability itself, not case/control")
    p.add_argument("--prevalence", type=float, default=0.5, help="share of cases before ascertainment (default: %(default)s)")
    p.add_argument("--shift", action="append", default=[], metavar="POP=VALUE",
                   help="environmental shift of a population's liability, in liability units (repeatable)")
    p.add_argument("--ascertain", metavar="POP:SHARE",
                   help="sample cases with SHARE from POP and controls with SHARE from elsewhere")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    p.add_argument("--out", required=True, help="output prefix")
    p.set_defaults(func=_run_trait)


def _parse_pairs(items, sep, what):
    out = []
    for item in items:
        name, _, value = item.rpartition(sep)
        try:
            out.append((name, float(value)))
        except ValueError:
            name = ""
        if not name:
            raise InputError(f"{what} {item!r}: expected POP{sep}NUMBER")
    return out


def _run_trait(args) -> int:
    import numpy as np

    spec = TraitSpec(h2=args.h2, causal=args.causal, binary=not args.quantitative, prevalence=args.prevalence,
                     shift=dict(_parse_pairs(args.shift, "=", "--shift")),
                     ascertain=_parse_pairs([args.ascertain], ":", "--ascertain")[0] if args.ascertain else None,
                     seed=args.seed)
    source = open_genotypes(args.bfile, args.pfile, args.vcf)
    labels_path = args.labels
    prefix = args.bfile or args.pfile
    if labels_path is None and prefix and Path(prefix + ".labels.tsv").exists():
        labels_path = prefix + ".labels.tsv"
    pops = None
    if labels_path:
        pops = read_labels(labels_path, source.samples.iid, column=args.label_column)
    trait = simulate_trait(source.read_all(), spec, pops)
    paths = write_trait(args.out, trait, source, spec)
    kept = ~np.isnan(trait.values)
    what = (f"{int(trait.values[kept].sum())} cases, {int((trait.values[kept] == 0).sum())} controls"
            if spec.binary else f"{int(kept.sum())} values")
    print(f"trait on {len(kept)} people: {what}; {spec.causal} causal SNPs, h2 {spec.h2}")
    print("wrote " + " ".join(str(p) for p in paths))
    return 0


def _add_inspect(sub):
    p = sub.add_parser(
        "inspect", help="check a KING matrix (any format) and its labels; print a summary",
        description="Read a KING matrix (.king, .king.bin, .kin0, .npy, CSV/TSV) and optionally a "
        "labels TSV, check that they fit together, and print what is in them.",
    )
    p.add_argument("king", help="KING matrix file")
    p.add_argument("--labels", help="labels TSV (sample column + label column)")
    p.add_argument("--label-column", default="superpopulation", help="label column (default: %(default)s)")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args) -> int:
    import numpy as np

    from seq2king.genetics.kingio import DEGREE_BOUNDS, read_king

    km = read_king(args.king)
    n = len(km.ids)
    off = km.values[np.tril_indices(n, -1)]
    finite = off[np.isfinite(off)]
    print(f"{args.king}: {n} people, {len(off):,} pairs")
    if len(finite):
        print(f"kinship: min {finite.min():.4f}, median {np.median(finite):.4f}, max {finite.max():.4f}")
    # KING's inference bands (Manichaikul et al. 2010), the same bounds as --degree's classes
    dup, first, second, third = DEGREE_BOUNDS
    for name, lo, hi in (("duplicate/MZ twin", dup, np.inf), ("1st degree", first, dup),
                         ("2nd degree", second, first), ("3rd degree", third, second)):
        print(f"  {name:18s} pairs: {int(((off >= lo) & (off < hi)).sum())}")
    if args.labels:
        labels = read_labels(args.labels, km.ids, column=args.label_column)
        groups, counts = np.unique(labels, return_counts=True)
        print("groups: " + ", ".join(f"{g} {c}" for g, c in zip(groups, counts)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2king", description="Population structure from KING-robust kinship and transformer attention.")
    parser.add_argument("--version", action="version", version=f"seq2king {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_simulate(sub)
    _add_king(sub)
    _add_trait(sub)
    _add_inspect(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command's own process: SIGTERM removes what is half-written on its way out
        raise_on_sigterm()
    rc = _main(argv)
    if argv is None:
        # The command is its own process and every file it wrote is closed and renamed:
        # skip the interpreter's teardown, which spends 0.5-0.7 s unloading torch (measured
        # as `python -c "import torch"` against the same with os._exit).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # the command line less --submit and its own options: what each submitted part runs
    drop = {"--submit": 1, "--submit-cluster": 1, "--slurm-partition": 1, "--slurm-time": 1, "--cpus-per-task": 1}
    args.argv, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
        elif a.split("=", 1)[0] in drop:
            skip = 0 if "=" in a else drop[a]
        else:
            args.argv.append(a)
    try:
        return args.func(args)
    except (InputError, OSError) as e:
        line = error_line(e)
        if line is None:  # an OSError naming no file: not the user's input, a bug to report
            raise
        print(f"seq2king: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seq2king: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("seq2king: terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return EXIT_TERMINATED
    except MemoryError:
        print("seq2king: error: out of memory; lower --memory-gb or --block-variants", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

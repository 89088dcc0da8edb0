"""Genotype input: PLINK 1 (.bed), PLINK 2 (.pgen) and VCF/BCF in one form.

Every reader gives the same thing: :class:`SampleIds`, a variant table and
genotype blocks streamed over variants, so a cohort larger than memory can be
processed one block at a time.

Genotype blocks are ``int8`` arrays of shape ``(n_samples, n_variants_in_block)``
holding the number of non-REF alleles (0, 1, 2) and :data:`MISSING` for a missing
call. For KING only the het / hom split matters, so allele orientation does not
change any result:

- ``.bed``: the A1 allele count from ``bed-reader``.
- ``.pgen``: 2 minus the REF count from ``pgenlib``; a multi-allelic genotype such
  as 1/2 is therefore homozygous non-REF, which is what plink2 does.
- VCF/BCF: the same non-REF count from ``cyvcf2`` genotypes; haploid calls count
  as homozygous, as plink2's import does.

Non-SNP variants (indels, MNPs) are kept, as plink2 keeps them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from seq2king.errors import FileFormatError, InputError

MISSING = np.int8(-127)

# plink2 --make-king drops chrX, chrY and chrMT (plink2 v2.00a3.5, checked against
# it: see tests/test_king_plink2.py). Pseudo-autosomal XY (25) and unplaced
# contigs (0) are kept, like every other contig name.
NON_KING_CHROMS = frozenset(
    {"X", "23", "Y", "24", "MT", "M", "26", "CHRX", "CHRY", "CHRM", "CHRMT"}
)


def king_variant_mask(chrom: Sequence[str]) -> np.ndarray:
    """Boolean mask of the variants plink2's KING-robust counts (autosomes, XY, 0)."""
    chrom = np.asarray(chrom, dtype=str)
    return ~np.isin(np.char.upper(chrom), list(NON_KING_CHROMS))


@dataclass
class SampleIds:
    """Sample identifiers as plink2 keeps them: optional FID, IID, optional SID."""

    iid: list[str]
    fid: list[str] | None = None
    sid: list[str] | None = None

    def __len__(self) -> int:
        return len(self.iid)

    def columns(self) -> list[tuple[str, list[str]]]:
        cols = []
        if self.fid is not None:
            cols.append(("FID", self.fid))
        cols.append(("IID", self.iid))
        if self.sid is not None:
            cols.append(("SID", self.sid))
        return cols

    def subset(self, index: Sequence[int]) -> "SampleIds":
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        return SampleIds(iid=pick(self.iid), fid=pick(self.fid), sid=pick(self.sid))

    def check_unique(self, source: str) -> None:
        seen: dict[str, int] = {}
        for i, x in enumerate(self.iid):
            if x in seen:
                raise FileFormatError(
                    f"{source}: duplicate sample ID {x!r} (rows {seen[x] + 1} and {i + 1}); "
                    "sample IDs must be unique because labels and outputs are joined by ID"
                )
            seen[x] = i


@dataclass
class Variants:
    """Variant table, one entry per variant in file order."""

    chrom: np.ndarray
    pos: np.ndarray
    id: np.ndarray
    ref: np.ndarray = field(default=None)
    alt: np.ndarray = field(default=None)

    def __len__(self) -> int:
        return len(self.chrom)


class GenotypeSource:
    """Base class: sample IDs, variants and genotype blocks of one data set."""

    path: Path
    samples: SampleIds

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def iter_blocks(
        self, block_size: int = 4096, king_only: bool = False
    ) -> Iterator[np.ndarray]:
        """Yield ``int8`` blocks ``(n_samples, <= block_size)`` of non-REF counts.

        With ``king_only`` only the variants plink2's KING-robust uses are read.
        """
        raise NotImplementedError

    def count_variants(self, king_only: bool = False) -> int | None:
        """Number of variants :meth:`iter_blocks` yields, or ``None`` if unknown."""
        return None

    def read_all(self, king_only: bool = False) -> np.ndarray:
        """All genotypes at once, ``(n_samples, n_variants)`` int8 (small data only)."""
        blocks = list(self.iter_blocks(1 << 16, king_only=king_only))
        if not blocks:
            return np.zeros((self.n_samples, 0), dtype=np.int8)
        return np.concatenate(blocks, axis=1)


# ----------------------------------------------------------------------------- text tables


def _read_table(path: Path, what: str, min_cols: int, comment_prefix: str | None = None):
    """Whitespace-separated rows of ``path``; one clear error if a row is short."""
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if comment_prefix and line.startswith(comment_prefix):
                continue
            parts = line.split()
            if not parts:
                continue
            if len(parts) < min_cols:
                raise FileFormatError(
                    f"{path}: line {lineno} has {len(parts)} columns, a {what} line needs {min_cols}"
                )
            rows.append(parts)
    return rows


def read_fam(path: Path) -> SampleIds:
    rows = _read_table(path, ".fam", 2)
    ids = SampleIds(fid=[r[0] for r in rows], iid=[r[1] for r in rows])
    ids.check_unique(str(path))
    return ids


def _read_bim(path: Path) -> Variants:
    """A .bim file: chrom, id, cM, position, allele 1 (ALT), allele 2 (REF), whitespace-separated.

    No pandas (importing it alone cost ``seq2king king`` 0.15 s, a fifth of plink2's whole
    run at 2,500 x 20k): a regular file (six columns per line, numeric positions) is split in
    one pass and converted column-wise; anything else is read line by line, which names the
    first short line. A position that is not a number reads as 0.
    """
    if path.exists():
        data = path.read_bytes()
        tokens = data.split()
        lines = data.count(b"\n") + (not data.endswith(b"\n"))
        if b"\n\n" in data or data[:1] == b"\n" or b"\n\r\n" in data:
            lines = sum(1 for line in data.splitlines() if line.strip())  # blank lines
        if tokens and len(tokens) == 6 * lines:
            cols = np.array(tokens, dtype=bytes).reshape(lines, 6)
            try:
                pos = cols[:, 3].astype(np.int64)
            except ValueError:
                pos = None
            if pos is not None:
                chrom, vid, a1, a2 = (cols[:, c].astype(str) for c in (0, 1, 4, 5))
                return Variants(chrom=chrom, pos=pos, id=vid, ref=a2, alt=a1)
    rows = _read_table(path, ".bim", 6)
    if not rows:
        return Variants(*(np.array([], dtype=str) for _ in range(3)), np.array([], dtype=str),
                        np.array([], dtype=str))
    chrom, vid, _, pos, a1, a2 = (list(c) for c in zip(*(r[:6] for r in rows)))

    def as_int(x: str) -> int:
        try:
            return int(x)
        except ValueError:
            try:
                return int(float(x))
            except ValueError:
                return 0

    return Variants(chrom=np.array(chrom, dtype=str), pos=np.array([as_int(x) for x in pos], dtype=np.int64),
                    id=np.array(vid, dtype=str), ref=np.array(a2, dtype=str), alt=np.array(a1, dtype=str))


def _runs(index: np.ndarray, block_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(index), block_size):
        yield index[start : start + block_size]


# ----------------------------------------------------------------------------- PLINK 1


class BedSource(GenotypeSource):
    """PLINK 1 binary fileset ``PREFIX.bed/.bim/.fam`` read with ``bed-reader``."""

    def __init__(self, prefix: str | os.PathLike, num_threads: int | None = None):
        prefix = str(prefix)
        if prefix.endswith(".bed"):
            prefix = prefix[:-4]
        self.prefix = prefix
        self.path = Path(prefix + ".bed")
        fam, bim = Path(prefix + ".fam"), Path(prefix + ".bim")
        if not self.path.exists():
            raise InputError(f"{self.path}: .bed file not found")
        self.samples = read_fam(fam)
        self.variants = _read_bim(bim)
        n, m = len(self.samples), len(self.variants)
        if n == 0:
            raise FileFormatError(f"{fam}: no samples")
        with open(self.path, "rb") as fh:
            magic = fh.read(3)
        if magic[:2] != b"\x6c\x1b":
            raise FileFormatError(f"{self.path}: not a PLINK .bed file (bad magic bytes)")
        if len(magic) < 3 or magic[2] != 1:
            raise FileFormatError(f"{self.path}: sample-major .bed files are not supported; re-save it with plink")
        expected = 3 + ((n + 3) // 4) * m
        size = self.path.stat().st_size
        if size != expected:
            raise FileFormatError(
                f"{self.path}: {size} bytes, but {n} samples in {fam.name} and {m} variants in "
                f"{bim.name} need {expected}; the .bed is truncated or the .fam/.bim line counts do not match it"
            )
        if n % 4 and m:
            # Each variant's last byte pads unused genotype slots with zero bits;
            # data there means the .fam lists fewer people than the .bed holds.
            bpv = (n + 3) // 4
            raw = np.memmap(self.path, dtype=np.uint8, mode="r")
            last = raw[3 + bpv - 1 :: bpv][:m]
            bad = np.flatnonzero(last >> (2 * (n % 4)))
            del raw
            if len(bad):
                raise FileFormatError(
                    f"{self.path}: variant {bad[0] + 1} has genotypes beyond the {n} samples in {fam.name}; "
                    "the .fam line count does not match the .bed"
                )
        self.num_threads = num_threads
        self._bed = None

    def _open(self):
        if self._bed is None:
            from bed_reader import open_bed

            self._bed = open_bed(
                self.path, iid_count=len(self.samples), sid_count=len(self.variants),
                num_threads=self.num_threads,  # counts given: it reads no .fam/.bim (0.14 s at 100k variants)
            )
        return self._bed

    def _index(self, king_only: bool) -> np.ndarray:
        if king_only:
            return np.flatnonzero(king_variant_mask(self.variants.chrom))
        return np.arange(len(self.variants))

    def count_variants(self, king_only: bool = False) -> int:
        return len(self._index(king_only))

    def iter_blocks(self, block_size: int = 4096, king_only: bool = False):
        bed = self._open()
        index = self._index(king_only)
        for idx in _runs(index, block_size):
            if idx[-1] - idx[0] + 1 == len(idx):
                sel = np.s_[:, int(idx[0]) : int(idx[-1]) + 1]
            else:
                sel = np.s_[:, idx]
            # order="F": the .bed is variant-major, and bed-reader fills a variant-major array
            # about 7x faster than a sample-major one (0.2 s against 1.4 s for 2,500 x 100k)
            yield bed.read(sel, dtype="int8", order="F")


# ----------------------------------------------------------------------------- PLINK 2


def _read_psam(path: Path) -> SampleIds:
    if not path.exists():
        raise InputError(f"{path}: .psam file not found")
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    header = None
    while lines and lines[0].startswith("#"):
        first = lines.pop(0)
        if first.startswith("#FID") or first.startswith("#IID"):
            header = first[1:].split()
    if header is None:  # .fam-formatted psam
        return read_fam(path)
    if "IID" not in header:
        raise FileFormatError(f"{path}: header has no IID column")
    cols = {name: i for i, name in enumerate(header)}
    rows = []
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) < len(header):
            raise FileFormatError(f"{path}: sample line {lineno} has {len(parts)} columns, header has {len(header)}")
        rows.append(parts)
    get = lambda c: [r[cols[c]] for r in rows] if c in cols else None  # noqa: E731
    ids = SampleIds(iid=get("IID"), fid=get("FID"), sid=get("SID"))
    ids.check_unique(str(path))
    return ids


def _read_pvar(path: Path) -> Variants:
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: .pvar file not found")
    header, skip = None, 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("##"):
                skip += 1
                continue
            if line.startswith("#CHROM"):
                header = line[1:].split()
                skip += 1
            break
    if header is None:
        return _read_bim(path)
    try:
        df = pd.read_csv(path, sep="\t", header=None, names=header, skiprows=skip, dtype=str,
                         usecols=["CHROM", "POS", "ID", "REF", "ALT"])
    except (pd.errors.ParserError, ValueError) as e:
        raise FileFormatError(f"{path}: not a valid .pvar file ({str(e).splitlines()[0]})") from None
    return Variants(
        chrom=df["CHROM"].to_numpy(dtype=str),
        pos=pd.to_numeric(df["POS"], errors="coerce").fillna(0).to_numpy(np.int64),
        id=df["ID"].fillna(".").to_numpy(dtype=str),
        ref=df["REF"].to_numpy(dtype=str),
        alt=df["ALT"].to_numpy(dtype=str),
    )


class PgenSource(GenotypeSource):
    """PLINK 2 fileset ``PREFIX.pgen/.pvar/.psam`` read with ``pgenlib``."""

    def __init__(self, prefix: str | os.PathLike):
        prefix = str(prefix)
        if prefix.endswith(".pgen"):
            prefix = prefix[:-5]
        self.path = Path(prefix + ".pgen")
        if not self.path.exists():
            raise InputError(f"{self.path}: .pgen file not found")
        self.samples = _read_psam(Path(prefix + ".psam"))
        self.variants = _read_pvar(Path(prefix + ".pvar"))
        if len(self.samples) == 0:
            raise FileFormatError(f"{prefix}.psam: no samples")
        import pgenlib

        try:
            reader = pgenlib.PgenReader(bytes(self.path), raw_sample_ct=len(self.samples))
            m = reader.get_variant_ct()
            reader.close()
        except Exception as e:  # pgenlib raises plain RuntimeError
            raise FileFormatError(f"{self.path}: cannot be read as a .pgen with {len(self.samples)} samples ({e})") from None
        if m != len(self.variants):
            raise FileFormatError(f"{self.path}: holds {m} variants but {prefix}.pvar lists {len(self.variants)}")

    def _index(self, king_only: bool) -> np.ndarray:
        if king_only:
            return np.flatnonzero(king_variant_mask(self.variants.chrom)).astype(np.uint32)
        return np.arange(len(self.variants), dtype=np.uint32)

    def count_variants(self, king_only: bool = False) -> int:
        return len(self._index(king_only))

    def iter_blocks(self, block_size: int = 4096, king_only: bool = False):
        import pgenlib

        n = len(self.samples)
        reader = pgenlib.PgenReader(bytes(self.path), raw_sample_ct=n)
        try:
            for idx in _runs(self._index(king_only), block_size):
                out = np.empty((n, len(idx)), dtype=np.int8)
                try:
                    # REF counts, sample-major; -9 marks a missing call.
                    reader.read_list(np.ascontiguousarray(idx), out, allele_idx=0, sample_maj=1)
                except Exception as e:
                    raise FileFormatError(f"{self.path}: read failed ({e}); the file is truncated or corrupt") from None
                missing = out == -9
                np.subtract(np.int8(2), out, out=out)
                out[missing] = MISSING
                yield out
        finally:
            reader.close()


# ----------------------------------------------------------------------------- VCF / BCF


class VcfSource(GenotypeSource):
    """VCF or BCF (plain or bgzipped) streamed with ``cyvcf2``.

    IDs follow plink2 ``--vcf``: the VCF sample name is the IID, with no FID.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: VCF file not found")
        self.threads = threads
        vcf = self._open()
        samples = list(vcf.samples)
        vcf.close()
        if not samples:
            raise FileFormatError(f"{self.path}: the VCF has no samples (no genotype columns)")
        self.samples = SampleIds(iid=samples)
        self.samples.check_unique(str(self.path))

    def _open(self):
        import cyvcf2

        try:
            return cyvcf2.VCF(str(self.path), gts012=True, threads=self.threads, lazy=True)
        except (OSError, Exception) as e:
            raise FileFormatError(f"{self.path}: cannot be read as VCF/BCF ({e})") from None

    def iter_blocks(self, block_size: int = 4096, king_only: bool = False):
        n = self.n_samples
        vcf = self._open()
        block = np.empty((block_size, n), dtype=np.int8)
        k = 0
        try:
            for rec in vcf:
                if king_only and rec.CHROM.upper() in NON_KING_CHROMS:
                    continue
                if len(rec.ALT) <= 1:
                    g = rec.gt_types.astype(np.int8)  # 0 hom-ref, 1 het, 2 hom-alt, 3 unknown
                    g[g == 3] = MISSING
                else:
                    a = rec.genotype.array()[:, :-1]  # drop the phase column
                    called = a >= 0
                    g = (a > 0).sum(axis=1).astype(np.int8)
                    if a.shape[1] == 2:
                        hap = called[:, 0] & ~called[:, 1] & (a[:, 1] == -2)  # haploid call
                        g[hap] = 2 * (a[hap, 0] > 0)
                        g[~called[:, 0] | (~called[:, 1] & ~hap)] = MISSING
                    else:
                        g = 2 * g
                        g[~called[:, 0]] = MISSING
                block[k] = g
                k += 1
                if k == block_size:
                    yield np.ascontiguousarray(block.T)
                    k = 0
        except InputError:
            raise
        except Exception as e:
            raise FileFormatError(f"{self.path}: read failed ({e}); the file is truncated or malformed") from None
        finally:
            vcf.close()
        if k:
            yield np.ascontiguousarray(block[:k].T)


class SubsetSource(GenotypeSource):
    """The people ``index`` (in file order) of another source, as plink2's ``--keep``/``--remove`` leave them."""

    def __init__(self, source: GenotypeSource, index: np.ndarray):
        self.source = source
        self.index = np.asarray(index, dtype=np.int64)
        self.path = source.path
        self.samples = source.samples.subset(self.index)

    def count_variants(self, king_only: bool = False) -> int | None:
        return self.source.count_variants(king_only)

    def iter_blocks(self, block_size: int = 4096, king_only: bool = False):
        for block in self.source.iter_blocks(block_size, king_only=king_only):
            yield block[self.index]


def read_sample_file(path: str | os.PathLike, flag: str) -> tuple[list[str] | None, list[str]]:
    """A plink2 sample ID file (``--keep``/``--remove``): ``(FIDs or None, IIDs)``.

    A header line starting with ``#FID`` or ``#IID`` names the columns; without one, one column is IID and
    two or more are FID IID (plink2's rule). Blank lines are skipped.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(f"{flag} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{flag} {path}: cannot read it ({e.__class__.__name__})") from None
    rows = [ln.split() for ln in lines if ln.strip()]
    fid_col, iid_col = None, 0
    if rows and rows[0][0].startswith("#"):
        head = [c.lstrip("#").upper() for c in rows.pop(0)]
        if "IID" not in head:
            raise InputError(f"{flag} {path}: header line {' '.join(head)!r} has no IID column")
        iid_col, fid_col = head.index("IID"), (head.index("FID") if "FID" in head else None)
    elif rows and len(rows[0]) >= 2:
        fid_col, iid_col = 0, 1
    need = max(iid_col, fid_col or 0) + 1
    for k, r in enumerate(rows):
        if len(r) < need:
            raise InputError(f"{flag} {path}: line {k + 1} has {len(r)} column(s), expected at least {need}")
    fids = None if fid_col is None else [r[fid_col] for r in rows]
    return fids, [r[iid_col] for r in rows]


def select_samples(source: GenotypeSource, keep: str | None = None, remove: str | None = None) -> GenotypeSource:
    """plink2's ``--keep FILE`` / ``--remove FILE``: the people listed (or not), in the file's own order.

    IDs are matched as plink2 matches them: on FID and IID when the data has FIDs (a file without an FID
    column means FID 0), else on IID; IDs not in the data are ignored. Fewer than two people left is an
    error naming the files.
    """
    if not keep and not remove:
        return source
    ids = source.samples

    def chosen(path: str, flag: str) -> np.ndarray:
        fids, iids = read_sample_file(path, flag)
        if ids.fid is not None:
            want = set(zip(fids or ["0"] * len(iids), iids))
            return np.array([(f, i) in want for f, i in zip(ids.fid, ids.iid)], dtype=bool)
        want = set(iids)
        return np.array([i in want for i in ids.iid], dtype=bool)

    mask = np.ones(len(ids), dtype=bool)
    if keep:
        mask &= chosen(keep, "--keep")
    if remove:
        mask &= ~chosen(remove, "--remove")
    if mask.sum() < 2:
        files = " and ".join(f"{f} {p}" for f, p in (("--keep", keep), ("--remove", remove)) if p)
        raise InputError(f"{files}: {int(mask.sum())} of {len(ids)} people in {source.path} remain; KING needs 2")
    if mask.all():
        return source
    return SubsetSource(source, np.flatnonzero(mask))


def open_genotypes(
    bfile: str | None = None, pfile: str | None = None, vcf: str | None = None
) -> GenotypeSource:
    """Open exactly one of a PLINK 1 prefix, a PLINK 2 prefix or a VCF/BCF path."""
    given = [x for x in (bfile, pfile, vcf) if x]
    if len(given) != 1:
        raise InputError("give exactly one of --bfile PREFIX, --pfile PREFIX or --vcf FILE")
    if bfile:
        return BedSource(bfile)
    if pfile:
        return PgenSource(pfile)
    return VcfSource(vcf)

"""KING matrix files: plink2's ``.king`` / ``.king.bin`` / ``.king.id`` / ``.kin0``.

Writers reproduce plink2 ``--make-king`` and ``--make-king-table`` byte for byte:

- ``.king.bin``: float64 (``bin``) or float32 (``bin4``), little-endian; triangle
  = strict lower triangle row by row (row 1 has 1 value, row 2 has 2, ...);
  square = every row in full with 0.5 on the diagonal.
- ``.king``: the same numbers as text, tab-separated, 6 significant digits as
  plink2 prints them (``nan``, ``-inf`` spelled out).
- ``.king.id``: ``#FID\tIID`` (or ``#IID`` when the input has no FIDs) then one
  line per person.
- ``.kin0``: ``#FID1 IID1 FID2 IID2 NSNP HETHET IBS0 KINSHIP``; HETHET and IBS0 are
  proportions of NSNP unless ``counts``.

Readers return a :class:`KingMatrix` from any of those, from KING's own
``.kin0``, from a CSV/TSV matrix with an ID header, or from ``.npy`` (+ ``.king.id``).
"""

from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from seq2king.errors import FileFormatError, InputError
from seq2king.fileio import AtomicFiles, naming
from seq2king.genetics.genotypes import SampleIds
from seq2king.genetics.king import KingBand

SHAPES = ("triangle", "square", "square0")
ENCODINGS = ("bin", "bin4", "text")


# ----------------------------------------------------------------------------- numbers as text


_BANKER8 = (0.499999995, 0.500000005)


def _banker_round(v: float) -> int:
    """plink2's rounding: to nearest, ties (within 5e-9) to even."""
    r = int(v)
    return r + int((v - r) + _BANKER8[r & 1])


def format_g6(x: float) -> str:
    """A float exactly as plink2's ``dtoa_g`` prints it (6 significant digits).

    plink2 rounds half to even on the scaled decimal, with a small tolerance, so
    ``-0.1153125`` prints as ``-0.115312`` where ``%.6g`` gives ``-0.115313``;
    this follows plink2's steps (same scalings, same rounding) to match it byte
    for byte.
    """
    if x != x:
        return "nan"
    sign = ""
    if x < 0:
        sign, x = "-", -x
    if x < 9.9999949999999e-5:
        if x == 0.0:
            return sign + "0"
        xp = 0
        if x < 9.9999949999999e-16:
            if x < 9.9999949999999e-128:
                if x < 9.9999949999999e-256:
                    x *= 1.0e256
                    xp |= 256
                else:
                    x *= 1.0e128
                    xp |= 128
            if x < 9.9999949999999e-64:
                x *= 1.0e64
                xp |= 64
            if x < 9.9999949999999e-32:
                x *= 1.0e32
                xp |= 32
            if x < 9.9999949999999e-16:
                x *= 1.0e16
                xp |= 16
        if x < 9.9999949999999e-8:
            x *= 100000000
            xp |= 8
        if x < 9.9999949999999e-4:
            x *= 10000
            xp |= 4
        if x < 9.9999949999999e-2:
            x *= 100
            xp |= 2
        if x < 9.9999949999999e-1:
            x *= 10
            xp += 1
        q, rem = divmod(_banker_round(x * 100000), 100000)
        body = str(q) + ("." + f"{rem:05d}".rstrip("0") if rem else "")
        return f"{sign}{body}e-{xp:02d}"
    if x >= 0.99999949999999:
        if x == float("inf"):
            return sign + "inf"
        return sign + ("%.6g" % x)  # >= 1 never occurs for kinship or proportions below 1
    out = "0."
    if x < 9.9999949999999e-3:
        x *= 100
        out += "00"
    if x < 9.9999949999999e-2:
        x *= 10
        out += "0"
    return sign + out + f"{_banker_round(x * 1000000):06d}".rstrip("0")


def _format_row(values: np.ndarray) -> list[str]:
    return [format_g6(v) for v in values.tolist()]


# ----------------------------------------------------------------------------- IDs


def read_king_id(path: Path) -> SampleIds:
    if not path.exists():
        raise InputError(f"{path}: ID file not found (a .king/.king.bin needs its .king.id beside it)")
    with open(path, encoding="utf-8") as fh:
        lines = [ln.rstrip("\n").rstrip("\r") for ln in fh if ln.strip()]
    if not lines:
        raise FileFormatError(f"{path}: empty ID file")
    if lines[0].startswith("#"):
        header = lines[0][1:].split("\t")
        body = lines[1:]
    else:  # headerless: FID IID, as older plink2 wrote
        header = ["FID", "IID"] if len(lines[0].split()) >= 2 else ["IID"]
        body = lines
    if "IID" not in header:
        raise FileFormatError(f"{path}: header {lines[0]!r} has no IID column")
    rows = [ln.split() for ln in body]
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise FileFormatError(f"{path}: line {i + 2} has {len(r)} fields, the header has {len(header)}")
    col = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    ids = SampleIds(iid=col["IID"], fid=col.get("FID"), sid=col.get("SID"))
    ids.check_unique(str(path))
    return ids


# ----------------------------------------------------------------------------- writers


# KING's degree boundaries (Manichaikul et al. 2010): kinship above 2^-1.5 is a duplicate or MZ twin, then
# first, second and third degree down to 2^-2.5, 2^-3.5 and 2^-4.5; below that, unrelated.
DEGREE_BOUNDS = (2 ** -1.5, 2 ** -2.5, 2 ** -3.5, 2 ** -4.5)
# First degree: parent-offspring pairs share an allele IBD everywhere, so their IBS0 (share of markers where
# one is AA and the other BB) is genotyping error alone; full siblings have IBS0 near 1/4 x that of
# unrelated pairs (about 0.005 or more on SNP arrays). The default split sits between them.
PO_IBS0 = 0.0012


def relationship(kinship: np.ndarray, ibs0: np.ndarray, nsnp: np.ndarray, po_ibs0: float = PO_IBS0) -> list[str]:
    """KING's relationship class of each pair: Dup/MZ, PO, FS, 2nd, 3rd or UN (``ibs0``: counts)."""
    dup, first, second, third = DEGREE_BOUNDS
    prop = np.asarray(ibs0, dtype=np.float64) / np.maximum(np.asarray(nsnp), 1)
    out = np.full(len(kinship), "UN", dtype=object)
    k = np.asarray(kinship)
    out[k >= third] = "3rd"
    out[k >= second] = "2nd"
    out[k >= first] = np.where(prop[k >= first] < po_ibs0, "PO", "FS")
    out[k > dup] = "Dup/MZ"
    return out.tolist()


class KingWriter:
    """Consumes :class:`KingBand` objects in row order and writes plink2's files.

    Every file is written to a temporary name and renamed only when all bands
    have arrived (:meth:`close`); :meth:`abort` removes the temporaries.
    """

    def __init__(self, out: str | os.PathLike, ids: SampleIds, shape: str = "triangle",
                 encoding: str = "bin", table: bool = False, table_counts: bool = True,
                 matrix: bool = True, table_min: float | None = None, degree: bool = False,
                 po_ibs0: float = PO_IBS0, part: int | None = None):
        if shape not in SHAPES:
            raise InputError(f"--shape {shape}: choose one of {', '.join(SHAPES)}")
        if encoding not in ENCODINGS:
            raise InputError(f"--encoding {encoding}: choose one of {', '.join(ENCODINGS)}")
        self.out = str(out)
        self.ids = ids
        self.n = len(ids)
        self.shape, self.encoding = shape, encoding
        self.table, self.table_counts, self.matrix = table, table_counts, matrix
        self.table_min, self.degree, self.po_ibs0 = table_min, degree, po_ibs0
        # plink2 --parallel K N: OUT.king.bin.K / OUT.kin0.K, the table's header in part 1 only
        tail = "" if part is None else f".{part}"
        if part is not None and shape != "triangle":
            raise InputError(f"--parallel with --shape {shape}: plink2 splits the triangle only; use --shape triangle")
        self._tmp: dict[Path, AtomicFiles] = {}
        self._square = None
        self._fh_matrix = None
        self._fh_table = None
        self.final_paths: list[Path] = []
        if matrix:
            suffix = ".king" if encoding == "text" else ".king.bin"
            self.matrix_path = Path(self.out + suffix + tail)
            tmp = self._open_tmp(self.matrix_path)
            if shape == "triangle":
                self._fh_matrix = open(tmp, "w" if encoding == "text" else "wb")
            else:
                # Square rows need values from later bands: collect them in a
                # memory-mapped scratch file beside the output.
                self._square_path = Path(str(tmp) + ".sq")
                self._square = np.lib.format.open_memmap(
                    self._square_path, mode="w+", dtype=np.float64, shape=(self.n, self.n))
        if table:
            self.table_path = Path(self.out + ".kin0" + tail)
            self._fh_table = open(self._open_tmp(self.table_path), "w")
            if part in (None, 1):
                self._fh_table.write(self._table_header())
        self.id_path = Path(self.out + ".king.id")
        if matrix:
            self._open_tmp(self.id_path)

    def _open_tmp(self, path: Path) -> Path:
        files = AtomicFiles(path)
        self._tmp[path] = files
        return files.tmps[0]

    # -- table --------------------------------------------------------------------------
    def _id_fields(self, i: int) -> list[str]:
        return [vals[i] for _, vals in self.ids.columns()]

    def _table_header(self) -> str:
        names = [name for name, _ in self.ids.columns()]
        cols = [f"{c}1" for c in names] + [f"{c}2" for c in names]
        extra = ["INFTYPE"] if self.degree else []
        return "#" + "\t".join(cols + ["NSNP", "HETHET", "IBS0", "KINSHIP"] + extra) + "\n"

    def _write_table_rows(self, band: KingBand) -> None:
        fh = self._fh_table
        for i in range(band.r0, band.r1):
            if i == 0:
                continue
            r = i - band.r0
            js = np.arange(i)
            if self.table_min is not None:  # plink2 --king-table-filter: pairs with kinship >= the minimum
                js = np.flatnonzero(band.kinship[r, :i] >= self.table_min)
                if not len(js):
                    continue
            id1 = "\t".join(self._id_fields(i))
            nsnp = band.nsnp[r, js].tolist()
            hethet = band.hethet[r, js].tolist()
            ibs0 = band.ibs0[r, js].tolist()
            kin = _format_row(band.kinship[r, js])
            types = relationship(band.kinship[r, js], band.ibs0[r, js], band.nsnp[r, js], self.po_ibs0) \
                if self.degree else None
            lines = []
            for k, j in enumerate(js.tolist()):
                if self.table_counts:
                    hh, ib = str(hethet[k]), str(ibs0[k])
                else:  # plink2 multiplies by the reciprocal, it does not divide
                    recip = 1.0 / nsnp[k] if nsnp[k] else float("nan")
                    hh, ib = format_g6(hethet[k] * recip), format_g6(ibs0[k] * recip)
                tail = f"\t{types[k]}\n" if types is not None else "\n"
                lines.append(f"{id1}\t{chr(9).join(self._id_fields(j))}\t{nsnp[k]}\t{hh}\t{ib}\t{kin[k]}{tail}")
            fh.write("".join(lines))

    # -- matrix -------------------------------------------------------------------------
    def add(self, band: KingBand) -> None:
        if self.table:
            with naming(self.table_path):
                self._write_table_rows(band)
        if self.matrix:
            with naming(self.matrix_path):
                self._add_matrix_rows(band)

    def _add_matrix_rows(self, band: KingBand) -> None:
        if self.shape == "triangle":
            for i in range(band.r0, band.r1):
                if i == 0:
                    continue
                row = band.kinship[i - band.r0, :i]
                if self.encoding == "text":
                    self._fh_matrix.write("\t".join(_format_row(row)) + "\n")
                elif self.encoding == "bin":
                    self._fh_matrix.write(row.astype("<f8").tobytes())
                else:
                    self._fh_matrix.write(row.astype("<f4").tobytes())
        else:
            sq = self._square
            for i in range(band.r0, band.r1):
                row = band.kinship[i - band.r0, :i]
                sq[i, :i] = row
                sq[:i, i] = row

    def _finish_square(self) -> None:
        sq = self._square
        n = self.n
        tmp = self._tmp[self.matrix_path].tmps[0]
        with open(tmp, "w" if self.encoding == "text" else "wb") as fh:
            for i in range(n):
                row = np.array(sq[i], dtype=np.float64)
                row[i] = 0.5
                if self.shape == "square0":
                    row[i + 1:] = 0.0
                if self.encoding == "text":
                    parts = _format_row(row)
                    if self.shape == "square0":
                        parts[i + 1:] = ["0"] * (n - i - 1)
                    parts[i] = "0.5"
                    fh.write("\t".join(parts) + "\n")
                elif self.encoding == "bin":
                    fh.write(row.astype("<f8").tobytes())
                else:
                    fh.write(row.astype("<f4").tobytes())

    def close(self) -> list[Path]:
        """Finish every file and rename it into place; returns the final paths."""
        try:
            if self._fh_matrix is not None:
                with naming(self.matrix_path):  # the buffered rest is written here: a full disk shows now
                    self._fh_matrix.close()
            if self._square is not None:
                with naming(self.matrix_path):
                    self._square.flush()
                    self._finish_square()
                del self._square
                self._square = None
                self._square_path.unlink(missing_ok=True)
            if self._fh_table is not None:
                with naming(self.table_path):
                    self._fh_table.close()
            if self.matrix:
                cols = self.ids.columns()
                with naming(self.id_path), open(self._tmp[self.id_path].tmps[0], "w") as fh:
                    fh.write("#" + "\t".join(name for name, _ in cols) + "\n")
                    for row in zip(*(vals for _, vals in cols)):
                        fh.write("\t".join(row) + "\n")
        except BaseException:
            self.abort()
            raise
        for files in self._tmp.values():
            self.final_paths.extend(files.commit())
        self._tmp.clear()
        return self.final_paths

    def abort(self) -> None:
        for fh in (self._fh_matrix, self._fh_table):
            if fh is not None and not fh.closed:
                with contextlib.suppress(OSError):  # its buffered rest may not fit either: it is discarded
                    fh.close()
        if self._square is not None:
            del self._square
            self._square = None
            self._square_path.unlink(missing_ok=True)
        for files in self._tmp.values():
            files.discard()
        self._tmp.clear()


def write_king_bands(bands: Iterable[KingBand], out: str | os.PathLike, ids: SampleIds, **kw) -> list[Path]:
    writer = KingWriter(out, ids, **kw)
    try:
        for band in bands:
            writer.add(band)
    except BaseException:
        writer.abort()
        if hasattr(bands, "close"):  # a generator's own clean-up (its progress bar) before the error line
            bands.close()
        raise
    return writer.close()


# ----------------------------------------------------------------------------- readers


@dataclass
class KingMatrix:
    """A full symmetric KING matrix with the IDs of its rows (diagonal 0.5)."""

    ids: list[str]
    values: np.ndarray  # (n, n) float64

    def __post_init__(self):
        n = len(self.ids)
        assert self.values.shape == (n, n)


def _full_from_triangle(tri: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((n, n), dtype=np.float64)
    il = np.tril_indices(n, -1)
    out[il] = tri
    out[il[1], il[0]] = tri
    np.fill_diagonal(out, 0.5)
    return out


def _check_values(path: Path, values: np.ndarray) -> None:
    """NaN is an error (two people with no usable heterozygous calls); -inf is plink2's own."""
    if np.isnan(values).any():
        # Report it as (row, column) with column < row, as the triangle files store it.
        i, j = sorted(np.argwhere(np.isnan(values))[0])[::-1]
        raise FileFormatError(
            f"{path}: NaN kinship at row {i + 1}, column {j + 1}; a pair with no usable "
            "heterozygous calls cannot be used (remove that person or use more variants)"
        )


def king_id_for(path: Path) -> Path:
    name = path.name
    for suffix in (".king.bin", ".king", ".npy"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".king.id")
    return path.with_name(name + ".id")


def read_king(path: str | os.PathLike, check_finite: bool = True) -> KingMatrix:
    """Read a KING matrix in any supported form (detected from the name)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: KING file not found")
    name = path.name.lower()
    if name.endswith(".king.bin"):
        km = _read_king_bin(path)
    elif name.endswith(".king"):
        km = _read_king_text(path)
    elif name.endswith(".kin0") or name.endswith(".kin"):
        km = _read_kin0(path)
    elif name.endswith(".npy"):
        km = _read_npy(path)
    elif name.endswith((".csv", ".tsv", ".txt")):
        km = _read_delimited(path)
    else:
        raise InputError(
            f"{path}: unknown KING file type; use .king, .king.bin, .kin0, .npy, .csv or .tsv"
        )
    if check_finite:
        _check_values(path, km.values)
    return km


def _read_king_bin(path: Path) -> KingMatrix:
    ids = read_king_id(king_id_for(path))
    n = len(ids)
    size = path.stat().st_size
    layouts = {
        n * (n - 1) // 2 * 8: ("<f8", "triangle"),
        n * (n - 1) // 2 * 4: ("<f4", "triangle"),
        n * n * 8: ("<f8", "square"),
        n * n * 4: ("<f4", "square"),
    }
    if size not in layouts:
        raise FileFormatError(
            f"{path}: {size} bytes does not fit the {n} IDs in {king_id_for(path).name} "
            f"(triangle needs {n * (n - 1) // 2 * 8} or {n * (n - 1) // 2 * 4}, "
            f"square {n * n * 8} or {n * n * 4})"
        )
    dtype, shape = layouts[size]
    raw = np.fromfile(path, dtype=dtype).astype(np.float64)
    if shape == "triangle":
        values = _full_from_triangle(raw, n)
    else:
        values = raw.reshape(n, n)
        values = _symmetrize_square(path, values)
    return KingMatrix(ids.iid, values)


def _symmetrize_square(path: Path, values: np.ndarray) -> np.ndarray:
    """plink2's square0 leaves the upper triangle as zeros: fill it from below."""
    iu = np.triu_indices(len(values), 1)
    upper, lower = values[iu], values.T[iu]
    if np.all(upper == 0) and not np.all(lower == 0):
        values = values.copy()
        values[iu] = lower
    elif not np.array_equal(upper, lower, equal_nan=True):
        k = int(np.flatnonzero(~np.isclose(upper, lower, equal_nan=True))[0])
        raise FileFormatError(
            f"{path}: matrix is not symmetric (row {iu[0][k] + 1}, column {iu[1][k] + 1})"
        )
    return values


def _read_king_text(path: Path) -> KingMatrix:
    ids = read_king_id(king_id_for(path))
    n = len(ids)
    with open(path) as fh:
        rows = [ln.split() for ln in fh if ln.strip()]
    try:
        vals = [np.array(r, dtype=np.float64) for r in rows]
    except ValueError as e:
        raise FileFormatError(f"{path}: not a numeric KING matrix ({e})") from None
    if len(rows) == n and all(len(r) == n for r in rows):
        values = _symmetrize_square(path, np.vstack(vals))
    elif len(rows) == n - 1 and all(len(r) == i + 1 for i, r in enumerate(rows)):
        values = _full_from_triangle(np.concatenate(vals) if vals else np.array([]), n)
    else:
        raise FileFormatError(
            f"{path}: {len(rows)} rows do not form a triangle or square matrix for the {n} IDs "
            f"in {king_id_for(path).name}"
        )
    return KingMatrix(ids.iid, values)


def _read_kin0(path: Path) -> KingMatrix:
    """plink2 ``.kin0`` or KING's own ``.kin0``/``.kin`` pair tables."""
    with open(path) as fh:
        header = fh.readline().lstrip("#").split()
        rows = [ln.split() for ln in fh if ln.strip()]
    upper = [h.upper() for h in header]
    def col(*names):
        for nm in names:
            if nm in upper:
                return upper.index(nm)
        return None
    c1, c2, ck = col("IID1", "ID1"), col("IID2", "ID2"), col("KINSHIP")
    if c1 is None or c2 is None or ck is None:
        raise FileFormatError(f"{path}: a .kin0 table needs ID1/IID1, ID2/IID2 and KINSHIP columns, found {header}")
    order: dict[str, int] = {}
    for r in rows:
        if len(r) != len(header):
            raise FileFormatError(f"{path}: a row has {len(r)} fields, the header has {len(header)}")
        for x in (r[c2], r[c1]):
            order.setdefault(x, len(order))
    n = len(order)
    values = np.full((n, n), np.nan)
    np.fill_diagonal(values, 0.5)
    for r in rows:
        i, j = order[r[c1]], order[r[c2]]
        values[i, j] = values[j, i] = float(r[ck])
    missing = np.isnan(values)
    if missing.any():
        i, j = np.argwhere(missing)[0]
        ids = list(order)
        raise FileFormatError(f"{path}: no row for the pair {ids[i]!r}, {ids[j]!r}; the table must list every pair")
    return KingMatrix(list(order), values)


def _read_npy(path: Path) -> KingMatrix:
    try:
        values = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise FileFormatError(f"{path}: not a plain .npy array ({e})") from None
    id_path = king_id_for(path)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise FileFormatError(f"{path}: array has shape {values.shape}, a KING matrix must be square")
    ids = read_king_id(id_path).iid if id_path.exists() else [str(i) for i in range(len(values))]
    if len(ids) != len(values):
        raise FileFormatError(f"{path}: {len(values)} rows but {len(ids)} IDs in {id_path.name}")
    return KingMatrix(ids, _symmetrize_square(path, values.astype(np.float64)))


def _read_delimited(path: Path) -> KingMatrix:
    with open(path, newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delim = "\t" if "\t" in sample.splitlines()[0] else ","
        rows = list(csv.reader(fh, delimiter=delim))
    rows = [r for r in rows if r]
    if not rows:
        raise FileFormatError(f"{path}: empty matrix file")
    header = rows[0]
    body = rows[1:]
    # Optional first column of row IDs: a data row that starts with a non-number.
    def _is_number(x):
        try:
            float(x)
            return True
        except ValueError:
            return False

    has_row_ids = bool(body) and not _is_number(body[0][0])
    col_ids = header[1:] if has_row_ids else header
    n = len(col_ids)
    if len(body) != n:
        raise FileFormatError(f"{path}: {len(body)} rows but {n} IDs in the header; the matrix must be square")
    try:
        values = np.array([[float(x) for x in (r[1:] if has_row_ids else r)] for r in body])
    except ValueError as e:
        raise FileFormatError(f"{path}: non-numeric value ({e})") from None
    if values.shape != (n, n):
        raise FileFormatError(f"{path}: rows have different lengths; the matrix must be {n} x {n}")
    if has_row_ids and [r[0] for r in body] != col_ids:
        raise FileFormatError(f"{path}: row IDs do not match the header IDs in the same order")
    _check_values(path, values)
    if not np.allclose(values, values.T, equal_nan=True):
        i, j = np.argwhere(~np.isclose(values, values.T))[0]
        raise FileFormatError(f"{path}: matrix is not symmetric (row {i + 1}, column {j + 1})")
    return KingMatrix(list(col_ids), values)

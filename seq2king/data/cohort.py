"""A cohort ready for learning: IDs, the full KING matrix, optional labels.

Sources: a simulated cohort (the embedded default), genotypes (.bed, .pgen,
VCF) or a ready KING matrix. Simulation and KING results are cached under a
directory keyed by the digest of every byte of the inputs, so the second run with
the same inputs starts at once and a changed input gets its own entry. Every
cache entry has a sealed manifest (:mod:`seq2king.integrity`) checked when it is
opened: a changed, torn or corrupted cache file is rebuilt, never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2king.errors import InputError, os_error_line
from seq2king.fileio import ensure_folder, write_json
from seq2king.genetics.genotypes import BedSource, PgenSource, VcfSource
from seq2king.genetics.king import KingEngine
from seq2king.genetics.kingio import king_id_for, read_king, write_king_bands
from seq2king.genetics.labels import read_label_levels
from seq2king.genetics.simulate import simulate
from seq2king.genetics.store import GenotypeStore
from seq2king.integrity import bytes_digest, check_manifest, file_digest, write_manifest

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when simulate/KING outputs change meaning (3: keys from content digests, manifests)


@dataclass
class Cohort:
    ids: list[str]
    king: np.ndarray | None  # (n, n) float64, symmetric, diagonal 0.5; None when KING comes from ``store``
    source: str = ""
    levels: dict[str, list[str]] | None = None  # every categorical label column, the configured one first
    genotypes: dict | None = None  # {"kind": plink|pgen|vcf, "path": ...} when the KING came from genotypes
    store: object | None = None  # a GenotypeStore: KING on demand instead of the (n, n) matrix
    store_rows: np.ndarray | None = None  # each person's row in ``store``
    digests: dict | None = None  # {input file: XXH3-128 of its bytes}: what the cohort was made from

    @property
    def labels(self) -> list[str] | None:
        """The configured label column (the first level)."""
        return next(iter(self.levels.values())) if self.levels else None

    def open_genotypes(self):
        """The genotype source behind this cohort (None for a ready KING matrix)."""
        if not self.genotypes:
            return None
        kind, path = self.genotypes["kind"], self.genotypes["path"]
        return {"plink": BedSource, "pgen": PgenSource, "vcf": VcfSource}[kind](path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEQ2KING_CACHE", Path.home() / ".cache" / "seq2king"))


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder (``data.cache_dir``, else ``$SEQ2KING_CACHE``, else ``~/.cache/seq2king``), created if
    missing; a file in its place is one clear line, not a traceback later."""
    path = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        return ensure_folder(path)
    except OSError as e:
        raise InputError(f"data.cache_dir={path}: cannot be the cache folder ({os_error_line(e)})") from None


def cache_key(payload: dict) -> str:
    """A cache entry's folder name: a digest of everything its files depend on."""
    blob = json.dumps({"v": CACHE_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_digests(paths: list[Path], cache: Path) -> list[str]:
    """The XXH3-128 digest of every byte of each file, memoised in ``cache/digests`` against the file's size,
    mtime_ns, ctime_ns, inode and device, so that a file nobody touched is not read again (writing a file,
    ``touch`` or ``cp -p`` over it all change its ctime)."""
    memo = ensure_folder(cache / "digests")
    out = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise InputError(f"{p}: file not found") from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        name = memo / (bytes_digest(str(p.resolve()).encode()) + ".json")
        try:
            seen = json.loads(name.read_text())
            if seen.get("stamp") == stamp and isinstance(seen.get("xxh3"), str):
                out.append(seen["xxh3"])
                continue
        except (OSError, ValueError, AttributeError):
            pass
        digest = file_digest(p)
        write_json(name, {"path": str(p.resolve()), "stamp": stamp, "xxh3": digest})
        out.append(digest)
    return out


def check_digests(recorded: dict | None, now: dict | None, what: str, advice: str) -> None:
    """Stop when the genotypes (or KING file) behind a run changed since it was made.

    ``recorded`` and ``now``: ``{path: digest}`` in the same order (the cohort's :attr:`Cohort.digests`). A
    run made before digests were recorded has none, and is let through.
    """
    if not recorded or not now:
        return
    then, cur = list(recorded.items()), list(now.items())
    if len(then) != len(cur):
        raise InputError(f"{cur[0][0]}: {what} was made from other input files ({', '.join(recorded)}); {advice}")
    for (_, old), (path, new) in zip(then, cur):
        if old != new:
            raise InputError(f"{path}: its content changed since {what} was made (content hash {old[:12]} "
                             f"then, {new[:12]} now); {advice}")


def cached_build(manifest: Path, files: dict[str, Path], expect: dict, build, what: str) -> dict:
    """The cache entry whose sealed manifest is ``manifest``: checked, or (re)built by ``build()``.

    ``files`` {name: path} are the entry's files, ``expect`` the manifest keys that say what they were made
    from. A manifest that does not hold (missing, torn, edited, a file changed, truncated or gone) means one
    warning line, ``build()`` again, then a fresh manifest, written last. Returns the manifest.
    """
    found, why = check_manifest(manifest, files, expect=expect)
    if found is not None:
        return found
    if why != "not built":
        log.warning("cached %s in %s cannot be used (%s): building it again", what, manifest.parent, why)
    manifest.unlink(missing_ok=True)  # until the new one is written last, the entry is not built
    build()
    return write_manifest(manifest, files, **expect)


def _king_cached(entry: Path, inputs: list[str], make_source, what: str) -> Path:
    """Path of the cached ``.king.bin`` computed from genotypes whose digests are ``inputs``."""
    out = entry / "cohort"
    files = {"king.bin": Path(f"{out}.king.bin"), "king.id": Path(f"{out}.king.id")}

    def build():
        log.info("computing KING-robust for %s (cached in %s)", what, entry)
        source = make_source()
        write_king_bands(KingEngine(source).run(), out, source.samples)

    cached_build(Path(f"{out}.king.json"), files, {"kind": "king", "inputs": inputs}, build, "KING matrix")
    return files["king.bin"]


STORES = ("auto", "memory", "stream")


def _streamed(entry: Path, source, inputs: list[str], labels: str | None, label_column: str,
              what: str) -> Cohort:
    """A cohort whose KING comes from a genotype store built (once) in the cache, never a full matrix."""
    store = GenotypeStore.open_or_build(entry / "cohort", source, inputs=inputs)
    ids = [str(i) for i in source.samples.iid]
    levels = read_label_levels(labels, ids, column=label_column) if labels else None
    keep = np.flatnonzero(store.het > 0)
    if len(keep) < len(ids):  # plink2 gives them -inf or nan against everyone, as the full path drops them
        dropped = [ids[i] for i in np.flatnonzero(store.het == 0)]
        log.warning("%s: dropping %d people with no heterozygous calls (their kinship is not finite): %s",
                    what, len(dropped), ", ".join(dropped[:5]))
        ids = [ids[i] for i in keep]
        levels = None if levels is None else {k: [v[i] for i in keep] for k, v in levels.items()}
    return Cohort(ids=ids, king=None, source=what, levels=levels, store=store, store_rows=keep)


PLINK_FILES = {"plink": (".bed", ".bim", ".fam"), "pgen": (".pgen", ".pvar", ".psam")}


def simulated_cohort(model: str = "AmericanAdmixture_4B18", samples: int = 1000, length: float = 20e6,
                     seed: int = 1, maf: float = 0.01, aims: int | None = None, aims_spacing: float | None = None,
                     loci: int | None = None, within_f: float | None = None, between_shrink: float | None = None,
                     cache_dir: str | None = None) -> tuple[Path, Path, dict]:
    """``(entry folder, PLINK prefix, {path: digest})`` of an embedded simulated cohort, simulated on first
    use and checked against its manifest on every later one (a changed or torn file is simulated again)."""
    cache = cache_root(cache_dir)
    payload = {"kind": "simulated", "model": model, "samples": samples, "length": float(length), "seed": seed,
               "maf": maf}
    extra = {k: v for k, v in (("aims", aims), ("aims_spacing", aims_spacing), ("loci", loci),
                                ("within_f", within_f), ("between_shrink", between_shrink)) if v is not None}
    payload.update(extra)
    entry = cache / cache_key(payload)
    prefix = entry / "cohort"
    files = {ext: Path(f"{prefix}{ext}") for ext in (*PLINK_FILES["plink"], ".labels.tsv")}

    def build():
        log.info("simulating %s: %d people, %.0f bp (cached in %s)", model, samples, length, entry)
        simulate(prefix, model=model, samples=samples, length=length, seed=seed, maf=maf, **extra)

    manifest = cached_build(Path(f"{prefix}.sim.json"), files, {"simulation": payload}, build, "simulated cohort")
    digests = {str(files[ext]): manifest["files"][ext]["xxh3"] for ext in PLINK_FILES["plink"]}
    return entry, prefix, digests


def load_simulated(model: str = "AmericanAdmixture_4B18", samples: int = 1000, length: float = 20e6,
                   seed: int = 1, maf: float = 0.01, aims: int | None = None, aims_spacing: float | None = None,
                   loci: int | None = None, within_f: float | None = None, between_shrink: float | None = None,
                   label_column: str = "superpopulation", cache_dir: str | None = None,
                   store: str = "memory") -> Cohort:
    """The embedded cohorts: simulate once, compute KING once, then read the (checked) cache.

    ``aims``: keep the most ancestry-informative variants only (an ancestry panel);
    ``loci``, ``within_f``, ``between_shrink``: the ``WithinContinent26`` model's unlinked loci, populations'
    drift from their continent (median F) and continents' pull towards their mean.
    """
    entry, prefix, digests = simulated_cohort(model, samples, length, seed, maf, aims, aims_spacing, loci,
                                              within_f, between_shrink, cache_dir)
    extra = {k: v for k, v in (("aims", aims), ("aims_spacing", aims_spacing), ("loci", loci),
                                ("within_f", within_f), ("between_shrink", between_shrink)) if v is not None}
    what = f"simulated:{model}:{samples}:{int(length)}:{seed}" + "".join(f":{k}={v}" for k, v in extra.items())
    inputs = list(digests.values())
    if store == "stream":
        cohort = _streamed(entry, BedSource(prefix), inputs, f"{prefix}.labels.tsv", label_column, what)
    else:
        king_path = _king_cached(entry, inputs, lambda: BedSource(prefix), f"the simulated cohort {entry.name}")
        cohort = load_king(king_path, labels=f"{prefix}.labels.tsv", label_column=label_column, source=what,
                           digests=digests)
    cohort.genotypes = {"kind": "plink", "path": str(prefix)}
    cohort.digests = digests
    return cohort


def genotype_files(kind: str, path: str) -> tuple[str, list[Path]]:
    """``(prefix or file, its files)`` for a genotype source: a PLINK prefix (a trailing .bed/.pgen and the
    like taken off) and its three files, or the one VCF."""
    p = str(path)
    exts = PLINK_FILES.get(kind)
    if not exts:
        return p, [Path(p)]
    for ext in exts:
        p = p[: -len(ext)] if p.endswith(ext) else p
    return p, [Path(p + ext) for ext in exts]


def load_genotypes(kind: str, path: str, labels: str | None = None,
                   label_column: str = "superpopulation", cache_dir: str | None = None,
                   store: str = "memory") -> Cohort:
    """Genotypes (``plink``/``pgen``/``vcf``): KING computed once and cached, keyed by every byte of them."""
    if not path:
        key = {"plink": "data.bfile=PREFIX", "pgen": "data.pfile=PREFIX", "vcf": "data.vcf=FILE"}[kind]
        raise InputError(f"data={kind} needs {key}")
    p, files = genotype_files(kind, path)
    cache = cache_root(cache_dir)
    inputs = content_digests(files, cache)
    digests = {str(f): d for f, d in zip(files, inputs)}
    entry = cache / cache_key({"kind": kind, "files": inputs})
    opener = {"plink": lambda: BedSource(p), "pgen": lambda: PgenSource(p), "vcf": lambda: VcfSource(p)}[kind]
    if store == "stream":
        cohort = _streamed(entry, opener(), inputs, labels, label_column, f"{kind}:{p}")
    else:
        king_path = _king_cached(entry, inputs, opener, p)
        cohort = load_king(king_path, labels=labels, label_column=label_column, source=f"{kind}:{p}",
                           digests=digests)
    cohort.genotypes = {"kind": kind, "path": p}
    cohort.digests = digests
    return cohort


def load_king(path: str, labels: str | None = None, label_column: str = "superpopulation",
              source: str | None = None, digests: dict | None = None) -> Cohort:
    """A ready KING matrix in any form :func:`read_king` knows, plus optional labels. ``digests``: what the
    matrix was made from (default: the digest of the matrix file and its ``.king.id``)."""
    if not path:
        raise InputError("data=king needs data.path=FILE (a .king, .king.bin, .kin0, .npy or CSV/TSV matrix)")
    km = read_king(path, check_finite=False)
    ids, values = km.ids, km.values
    levels = read_label_levels(labels, ids, column=label_column) if labels else None
    # Greedily drop whoever has the most non-finite entries until none are left
    # (one person with no heterozygous calls makes a whole column -inf).
    bad = np.zeros(len(ids), dtype=bool)
    finite = np.isfinite(values)
    while not finite[np.ix_(~bad, ~bad)].all():
        counts = np.where(bad, -1, (~finite[:, ~bad]).sum(axis=1))
        bad[int(np.argmax(counts))] = True
    if bad.any():
        # plink2 gives -inf for people with no heterozygous calls; they carry no
        # kinship information, so they are left out (and said so).
        dropped = [i for i, b in zip(ids, bad) if b]
        log.warning("%s: dropping %d people with non-finite kinship (no heterozygous calls?): %s",
                    path, len(dropped), ", ".join(dropped[:5]))
        keep = np.flatnonzero(~bad)
        ids = [ids[i] for i in keep]
        values = values[np.ix_(keep, keep)]
        levels = None if levels is None else {k: [v[i] for i in keep] for k, v in levels.items()}
    if digests is None:
        digests = {str(p): file_digest(p) for p in (Path(path), king_id_for(Path(path))) if p.is_file()}
    return Cohort(ids=list(ids), king=values, source=source or f"king:{path}", levels=levels, digests=digests)

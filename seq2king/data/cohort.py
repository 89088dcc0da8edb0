"""A cohort ready for learning: IDs, the full KING matrix, optional labels.

Sources: a simulated cohort (the embedded default), genotypes (.bed, .pgen,
VCF) or a ready KING matrix. Simulation and KING results are cached under a
content-keyed directory, so the second run with the same inputs starts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2king.errors import InputError

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when simulate/KING outputs change meaning


@dataclass
class Cohort:
    ids: list[str]
    king: np.ndarray | None  # (n, n) float64, symmetric, diagonal 0.5; None when KING comes from ``store``
    source: str = ""
    levels: dict[str, list[str]] | None = None  # every categorical label column, the configured one first
    genotypes: dict | None = None  # {"kind": plink|pgen|vcf, "path": ...} when the KING came from genotypes
    store: object | None = None  # a GenotypeStore: KING on demand instead of the (n, n) matrix
    store_rows: np.ndarray | None = None  # each person's row in ``store``

    @property
    def labels(self) -> list[str] | None:
        """The configured label column (the first level)."""
        return next(iter(self.levels.values())) if self.levels else None

    def open_genotypes(self):
        """The genotype source behind this cohort (None for a ready KING matrix)."""
        from seq2king.genetics.genotypes import BedSource, PgenSource, VcfSource

        if not self.genotypes:
            return None
        kind, path = self.genotypes["kind"], self.genotypes["path"]
        return {"plink": BedSource, "pgen": PgenSource, "vcf": VcfSource}[kind](path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEQ2KING_CACHE", Path.home() / ".cache" / "seq2king"))


def _key(payload: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_fingerprint(paths: list[Path]) -> list:
    out = []
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: file not found")
        st = p.stat()
        with open(p, "rb") as fh:  # size + mtime + the first and last MiB
            head = fh.read(1 << 20)
            fh.seek(max(0, st.st_size - (1 << 20)))
            tail = fh.read()
        out.append([str(p.resolve()), st.st_size, hashlib.sha256(head + tail).hexdigest()])
    return out


def _king_cached(cache: Path, key: str, make_source, what: str) -> Path:
    """Path of a cached ``.king.bin`` for ``key``, computing it on first use."""
    from seq2king.genetics.king import KingEngine
    from seq2king.genetics.kingio import write_king_bands

    out = cache / key / "cohort"
    if not Path(str(out) + ".king.bin").exists():
        log.info("computing KING-robust for %s (cached in %s)", what, out.parent)
        source = make_source()
        write_king_bands(KingEngine(source).run(), out, source.samples)
    return Path(str(out) + ".king.bin")


STORES = ("auto", "memory", "stream")


def _streamed(cache: Path, key: str, source, labels: str | None, label_column: str, what: str) -> Cohort:
    """A cohort whose KING comes from a genotype store built (once) in the cache, never a full matrix."""
    from seq2king.genetics.labels import read_label_levels
    from seq2king.genetics.store import GenotypeStore

    (cache / key).mkdir(parents=True, exist_ok=True)
    prefix = cache / key / "cohort"
    store = GenotypeStore.open_or_build(prefix, source)
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


def load_simulated(model: str = "AmericanAdmixture_4B18", samples: int = 1000, length: float = 20e6,
                   seed: int = 1, maf: float = 0.01, aims: int | None = None, aims_spacing: float | None = None,
                   loci: int | None = None,
                   label_column: str = "superpopulation", cache_dir: str | None = None,
                   store: str = "memory") -> Cohort:
    """The embedded cohorts: simulate once, compute KING once, then read the cache.

    ``aims``: keep the most ancestry-informative variants only (an ancestry panel);
    ``loci``: unlinked loci of the ``WithinContinent26`` model.
    """
    from seq2king.genetics.genotypes import BedSource
    from seq2king.genetics.simulate import simulate

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    payload = {"kind": "simulated", "model": model, "samples": samples, "length": float(length), "seed": seed,
               "maf": maf}
    extra = {k: v for k, v in (("aims", aims), ("aims_spacing", aims_spacing), ("loci", loci))
             if v is not None}  # cache keys unchanged without them
    key = _key({**payload, **extra})
    prefix = cache / key / "cohort"
    if not Path(str(prefix) + ".bed").exists():
        log.info("simulating %s: %d people, %.0f bp (cached in %s)", model, samples, length, prefix.parent)
        simulate(prefix, model=model, samples=samples, length=length, seed=seed, maf=maf, **extra)
    what = f"simulated:{model}:{samples}:{int(length)}:{seed}" + "".join(f":{k}={v}" for k, v in extra.items())
    if store == "stream":
        cohort = _streamed(cache, key, BedSource(prefix), str(prefix) + ".labels.tsv", label_column, what)
        cohort.genotypes = {"kind": "plink", "path": str(prefix)}
        return cohort
    king_path = _king_cached(cache, key, lambda: BedSource(prefix), f"the simulated cohort {key}")
    cohort = load_king(king_path, labels=str(prefix) + ".labels.tsv", label_column=label_column, source=what)
    cohort.genotypes = {"kind": "plink", "path": str(prefix)}
    return cohort


def load_genotypes(kind: str, path: str, labels: str | None = None,
                   label_column: str = "superpopulation", cache_dir: str | None = None,
                   store: str = "memory") -> Cohort:
    """Genotypes (``plink``/``pgen``/``vcf``): KING computed once and cached."""
    from seq2king.genetics.genotypes import BedSource, PgenSource, VcfSource

    if not path:
        key = {"plink": "data.bfile=PREFIX", "pgen": "data.pfile=PREFIX", "vcf": "data.vcf=FILE"}[kind]
        raise InputError(f"data={kind} needs {key}")
    p = str(path)
    files = {"plink": [".bed", ".bim", ".fam"], "pgen": [".pgen", ".pvar", ".psam"]}.get(kind)
    if files:
        for ext in files:
            p = p[: -len(ext)] if p.endswith(ext) else p
        fps = _file_fingerprint([Path(p + ext) for ext in files])
    else:
        fps = _file_fingerprint([Path(p)])
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _key({"kind": kind, "files": fps})
    opener = {"plink": lambda: BedSource(p), "pgen": lambda: PgenSource(p), "vcf": lambda: VcfSource(p)}[kind]
    if store == "stream":
        cohort = _streamed(cache, key, opener(), labels, label_column, f"{kind}:{p}")
        cohort.genotypes = {"kind": kind, "path": p}
        return cohort
    king_path = _king_cached(cache, key, opener, p)
    cohort = load_king(king_path, labels=labels, label_column=label_column, source=f"{kind}:{p}")
    cohort.genotypes = {"kind": kind, "path": p}
    return cohort


def load_king(path: str, labels: str | None = None, label_column: str = "superpopulation",
              source: str | None = None) -> Cohort:
    """A ready KING matrix in any form :func:`read_king` knows, plus optional labels."""
    from seq2king.genetics.kingio import read_king
    from seq2king.genetics.labels import read_label_levels

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
    return Cohort(ids=list(ids), king=values, source=source or f"king:{path}", levels=levels)

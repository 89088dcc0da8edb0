"""Traits on a cohort, for auditing SNP -> trait models for the ancestry shortcut.

A liability-threshold model on the people's own genotypes:

    y = g + e + shift[population],   g = Z_causal @ beta scaled to variance h2,   e ~ N(0, 1 - h2)

with ``Z`` the genotypes standardised by the cohort's allele frequencies (a missing call
counts as the mean), ``beta ~ N(0, 1)`` on ``causal`` SNPs drawn at random, and a
per-population environmental shift in liability units (what makes the trait differ
between populations without any genetic cause). A binary trait is ``y`` above its
``1 - prevalence`` quantile (at prevalence 0.5: "trait > median").

Ascertainment ``(population, share)`` (binary only) samples a case/control study in which
that share of the cases come from ``population`` and that share of the controls from
elsewhere, keeping as many people as the counts allow: the rule "population = case"
then scores ``share`` accuracy on the kept people, the shortcut the audit looks for
(Dagasso et al. 2025 ascertained theirs to 0.913). People not kept get no phenotype.

:func:`write_trait` writes ``PREFIX.pheno.tsv`` (``FID IID trait``; binary: 1 case,
0 control) and ``PREFIX.causal.tsv`` (the causal variants, their ALT frequency and
effect per ALT allele on the liability scale); :func:`read_phenotype` reads
phenotype files back, plink-style or ``sample value``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seq2king.errors import FileFormatError, InputError
from seq2king.fileio import atomic_files
from seq2king.genetics.genotypes import GenotypeSource, SampleIds
from seq2king.genetics.labels import sample_values
from seq2king.genetics.pca import allele_frequencies, standardise

MISSING_VALUES = {"", "NA", "nan", "NaN", "-9", "."}


@dataclass
class TraitSpec:
    h2: float = 0.7
    causal: int = 500
    binary: bool = True
    prevalence: float = 0.5
    shift: dict[str, float] = field(default_factory=dict)  # population -> liability shift
    ascertain: tuple[str, float] | None = None  # (population, share of cases from it)
    seed: int = 1

    def validate(self, populations: set[str] | None = None) -> None:
        if not 0 <= self.h2 <= 1:
            raise InputError(f"h2={self.h2}: heritability must be between 0 and 1")
        if self.causal < 1:
            raise InputError(f"causal={self.causal}: need at least one causal SNP")
        if not 0 < self.prevalence < 1:
            raise InputError(f"prevalence={self.prevalence}: must be between 0 and 1")
        if self.ascertain is not None:
            if not self.binary:
                raise InputError("ascertainment samples cases and controls: it needs a binary trait")
            if not 0.5 <= self.ascertain[1] < 1:
                raise InputError(f"ascertain share={self.ascertain[1]}: must be in [0.5, 1)")
        named = set(self.shift) | ({self.ascertain[0]} if self.ascertain else set())
        if named and populations is None:
            raise InputError("a population shift or ascertainment needs population labels")
        for pop in sorted(named - (populations or set())):
            raise InputError(f"population {pop!r} is not in the labels (found: {', '.join(sorted(populations))})")


@dataclass
class Trait:
    values: np.ndarray  # (n,) float64; NaN where the person was not ascertained
    liability: np.ndarray  # (n,) float64, everyone
    genetic: np.ndarray  # (n,) float64, the true genetic value g
    causal: np.ndarray  # (k,) variant indices
    effects: np.ndarray  # (k,) effect per ALT allele on the liability scale
    freq: np.ndarray  # (k,) ALT frequencies


def simulate_trait(genotypes: np.ndarray, spec: TraitSpec, populations: list[str] | None = None) -> Trait:
    """The trait for ``genotypes`` ``(n, m)`` int8 (0/1/2 ALT counts, ``MISSING`` = missing)."""
    spec.validate(None if populations is None else set(populations))
    n = len(genotypes)
    rng = np.random.default_rng(spec.seed)
    freq_all, usable = allele_frequencies(genotypes)
    usable = np.flatnonzero(usable)
    if len(usable) < spec.causal:
        raise InputError(f"causal={spec.causal}: only {len(usable)} polymorphic variants in the cohort")
    causal = np.sort(rng.choice(usable, spec.causal, replace=False))
    p = freq_all[causal]
    sd = np.sqrt(2 * p * (1 - p))
    z = standardise(genotypes[:, causal], p, np.float64)
    beta = rng.standard_normal(spec.causal)
    g = z @ beta
    scale = math.sqrt(spec.h2 / g.var()) if spec.h2 > 0 and g.var() > 0 else 0.0
    g *= scale
    e = rng.standard_normal(n) * math.sqrt(1 - spec.h2)
    pops = np.asarray(populations) if populations is not None else None
    shift = np.zeros(n)
    for pop, s in spec.shift.items():
        shift[pops == pop] = s
    y = g + e + shift
    values = y.copy()
    if spec.binary:
        values = (y > np.quantile(y, 1 - spec.prevalence)).astype(np.float64)
        if spec.ascertain is not None:
            values = _ascertain(values, pops == spec.ascertain[0], spec.ascertain[1], rng)
    return Trait(values=values, liability=y, genetic=g, causal=causal, effects=beta * scale / sd, freq=p)


def _ascertain(case: np.ndarray, in_pop: np.ndarray, share: float, rng) -> np.ndarray:
    """Keep cases with ``share`` from ``in_pop`` and controls with ``share`` from outside it."""
    groups = {(c, a): np.flatnonzero((case == c) & (in_pop == a)) for c in (0, 1) for a in (False, True)}
    n_cases = int(min(len(groups[1, True]) / share, len(groups[1, False]) / (1 - share)))
    n_controls = int(min(len(groups[0, False]) / share, len(groups[0, True]) / (1 - share)))
    if n_cases < 2 or n_controls < 2:
        raise InputError(f"ascertainment at share {share}: too few cases or controls in and outside the population "
                         f"(cases {len(groups[1, True])} in, {len(groups[1, False])} out; controls "
                         f"{len(groups[0, True])} in, {len(groups[0, False])} out)")
    keep = []
    for c, total in ((1, n_cases), (0, n_controls)):
        major = round(total * share)
        near, far = (groups[1, True], groups[1, False]) if c == 1 else (groups[0, False], groups[0, True])
        keep += [rng.choice(near, major, replace=False), rng.choice(far, total - major, replace=False)]
    out = np.full(len(case), np.nan)
    idx = np.concatenate(keep)
    out[idx] = case[idx]
    return out


def write_trait(prefix: str | os.PathLike, trait: Trait, source: GenotypeSource, spec: TraitSpec) -> list[Path]:
    """``PREFIX.pheno.tsv`` and ``PREFIX.causal.tsv``, both or neither."""
    prefix = str(prefix)
    paths = [Path(prefix + ".pheno.tsv"), Path(prefix + ".causal.tsv")]
    ids = source.samples
    fid = ids.fid if ids.fid is not None else ids.iid
    v = source.variants
    with atomic_files(*paths) as (pheno, causal):
        with open(pheno, "w", encoding="utf-8", newline="") as fh:
            fh.write("FID\tIID\ttrait\n")
            for f, i, x in zip(fid, ids.iid, trait.values):
                if not np.isnan(x):
                    fh.write(f"{f}\t{i}\t{int(x) if spec.binary else repr(float(x))}\n")
        with open(causal, "w", encoding="utf-8", newline="") as fh:
            fh.write("variant\tchrom\tpos\talt\talt_freq\teffect\n")
            for j, p, b in zip(trait.causal, trait.freq, trait.effects):
                alt = v.alt[j] if v.alt is not None else ""
                fh.write(f"{v.id[j]}\t{v.chrom[j]}\t{int(v.pos[j])}\t{alt}\t{p:.6g}\t{b:.6g}\n")
    return paths


def read_phenotype(path: str | os.PathLike, samples: SampleIds, column: str | None = None) -> np.ndarray:
    """Phenotype values for ``samples`` (their order), NaN where missing or absent.

    The file has a header: plink-style ``FID IID value...`` (``#FID`` too) or ``sample value...``
    (any of IID, sample, sample_id). ``column`` picks the value column (default: the first
    after the IDs). Missing: empty, NA, nan, -9 or ``.``. Every row must name a person in the data.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: phenotype file not found")
    with open(path, encoding="utf-8") as fh:
        lines = [ln.rstrip("\r\n") for ln in fh if ln.strip()]
    sep = "\t" if lines and "\t" in lines[0] else None  # tab-separated, or plink's whitespace
    rows = [ln.split(sep) for ln in lines]
    if not rows:
        raise FileFormatError(f"{path}: phenotype file is empty")
    header = [h.strip().lstrip("#") for h in rows[0]]
    id_col = next((c for c in ("IID", "sample", "sample_id") if c in header), None)
    if id_col is None:
        raise FileFormatError(f"{path}: no sample column; the header needs IID (with FID) or sample "
                              f"(found: {', '.join(header)})")
    id_cols = {"FID", id_col}
    values_cols = [c for c in header if c not in id_cols]
    if column is None:
        if not values_cols:
            raise FileFormatError(f"{path}: no value column after the sample IDs")
        column = values_cols[0]
    elif column not in values_cols:
        raise InputError(f"{path}: no phenotype column {column!r} (found: {', '.join(values_cols)})")
    i_id, i_val = header.index(id_col), header.index(column)
    index = {x: k for k, x in enumerate(samples.iid)}
    out = np.full(len(samples), np.nan)
    for sid, raw in sample_values(path, rows[1:], len(header), i_id, i_val, index):
        if raw in MISSING_VALUES:
            continue
        try:
            out[index[sid]] = float(raw)
        except ValueError:
            raise FileFormatError(f"{path}: phenotype {raw!r} of sample {sid!r} is not a number") from None
    if np.isnan(out).all():
        raise InputError(f"{path}: no person in the data has a phenotype")
    return out

"""The embedded confounded scenario: a two-population cohort with an ascertained trait, cached.

Simulated once (:func:`~seq2king.genetics.simulate.simulate_two_populations` and
:func:`~seq2king.genetics.traits.simulate_trait`), then read from a content-keyed cache
directory like the other embedded cohorts: ``cohort.bed/.bim/.fam``, ``cohort.labels.tsv``,
``cohort.pheno.tsv`` and ``cohort.causal.tsv``, the same files a user brings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from seq2king.data.cohort import cache_key, cache_root, cached_build
from seq2king.genetics.genotypes import BedSource
from seq2king.genetics.labels import read_labels
from seq2king.genetics.simulate import simulate_two_populations
from seq2king.genetics.traits import TraitSpec, simulate_trait, write_trait

log = logging.getLogger(__name__)


@dataclass
class ScenarioFiles:
    bfile: str  # PLINK prefix
    labels: str
    phenotype: str
    causal: str


def load_scenario(samples: int = 2000, loci: int = 10_000, length: float = 50e6, seed: int = 1,
                  fst: tuple = (0.2, 0.4), h2: float = 0.7, causal: int = 100, prevalence: float = 0.5,
                  shift: dict | None = None, ascertain: tuple | None = ("POP1", 0.9), trait_seed: int = 1,
                  cache_dir: str | None = None) -> ScenarioFiles:
    """The scenario's files, simulating them on first use."""
    shift = {str(k): float(v) for k, v in (shift or {}).items()}
    ascertain = (str(ascertain[0]), float(ascertain[1])) if ascertain else None
    payload = {"kind": "audit_cohort", "samples": samples, "loci": loci, "length": float(length), "seed": seed,
               "fst": [float(f) for f in fst]}
    cache = cache_root(cache_dir)
    entry = cache / cache_key(payload)
    prefix = entry / "cohort"
    files = {ext: Path(f"{prefix}{ext}") for ext in (".bed", ".bim", ".fam", ".labels.tsv")}

    def simulate():
        log.info("simulating the audit cohort: %d people, %d loci (cached in %s)", samples, loci, entry)
        simulate_two_populations(prefix, samples=samples, loci=loci, length=length, seed=seed, fst=tuple(fst))

    cohort = cached_build(Path(f"{prefix}.sim.json"), files, {"simulation": payload}, simulate, "audit cohort")
    spec = TraitSpec(h2=float(h2), causal=int(causal), binary=True, prevalence=float(prevalence), shift=shift,
                     ascertain=ascertain, seed=int(trait_seed))
    trait = entry / f"trait_{cache_key({'kind': 'audit_trait', 'spec': spec.__dict__})}"
    labels = str(prefix) + ".labels.tsv"
    trait_files = {ext: Path(f"{trait}{ext}") for ext in (".pheno.tsv", ".causal.tsv")}

    def make_trait():
        source = BedSource(prefix)
        pops = read_labels(labels, source.samples.iid, column="population")
        write_trait(trait, simulate_trait(source.read_all(), spec, pops), source, spec)

    cached_build(Path(f"{trait}.json"), trait_files, {"spec": spec.__dict__, "cohort": cohort["files"]}, make_trait,
                 "audit trait")
    return ScenarioFiles(str(prefix), labels, str(trait_files[".pheno.tsv"]), str(trait_files[".causal.tsv"]))

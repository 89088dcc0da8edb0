"""Simulated cohorts with msprime + stdpopsim, fully offline.

A model is a stdpopsim ``HomSap`` demographic model id (default
``AmericanAdmixture_4B18``: AFR, EUR, ASIA, ADMIX), a ``demes`` YAML file, or
``FiveContinents`` (the shipped :file:`seq2king/genetics/demes/five_continents.yaml`) or
``FiveContinentsSubpopulations`` (nine populations in five continents, with superpopulation labels).
No genetic map is downloaded: recombination is flat at the species' mean rate
(or the demes file's ``metadata.recombination_rate``), and mutations use the
model's own rate.

A long contig is simulated as independent chunks (``chunk_bp``) in parallel
processes; each chunk's seeds come from ``numpy.random.SeedSequence(seed)``, so
the same seed gives the same bytes whatever the number of workers. Only
biallelic sites with minor allele frequency >= ``maf`` are kept; all chunks are
laid end to end on chromosome 1.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from seq2king.errors import InputError

DEFAULT_MODEL = "AmericanAdmixture_4B18"
FIVE_CONTINENTS = "FiveContinents"
SHIPPED = {FIVE_CONTINENTS: "five_continents.yaml",  # the demes models that ship with seq2king
           "FiveContinentsSubpopulations": "five_continents_subpopulations.yaml"}


@dataclass
class ModelSpec:
    """A demography ready for msprime, with where to sample and which rates to use."""

    name: str
    demography: object  # msprime.Demography
    populations: list[str]  # sampled populations, in output order
    proportions: list[float]
    mutation_rate: float
    recombination_rate: float
    superpopulations: dict | None = None  # population -> superpopulation (labels file); None: the same


def load_model(model: str, mutation_rate: float | None = None,
               recombination_rate: float | None = None) -> ModelSpec:
    """Resolve ``model`` (stdpopsim id, demes YAML path or ``FiveContinents``)."""
    import msprime

    if model in SHIPPED:
        model = str(resources.files("seq2king.genetics.demes") / SHIPPED[model])
    if model.endswith((".yaml", ".yml")) or os.path.sep in model:
        import demes

        path = Path(model)
        if not path.exists():
            raise InputError(f"--model {model}: demes file not found")
        try:
            graph = demes.load(path)
            demography = msprime.Demography.from_demes(graph)
        except Exception as e:
            raise InputError(f"{path}: not a valid demes model ({str(e).splitlines()[0]})") from None
        meta = graph.metadata or {}
        props = meta.get("sample_proportions")
        if props:
            unknown = [p for p in props if p not in graph]
            if unknown:
                raise InputError(f"{path}: sample_proportions names unknown deme(s) {unknown}")
            pops, weights = list(props), [float(v) for v in props.values()]
        else:  # every deme alive at time 0, equally
            pops = [d.name for d in graph.demes if d.end_time == 0]
            weights = [1.0] * len(pops)
        mu = mutation_rate or meta.get("mutation_rate")
        if mu is None:
            raise InputError(f"{path}: no metadata.mutation_rate in the file; pass --mutation-rate")
        rho = recombination_rate or meta.get("recombination_rate", 1.25e-8)
        supers = meta.get("superpopulations")
        return ModelSpec(graph.description.split("\n")[0][:60] or path.stem, demography, pops,
                         weights, float(mu), float(rho), dict(supers) if supers else None)

    import stdpopsim

    species = stdpopsim.get_species("HomSap")
    try:
        dm = species.get_demographic_model(model)
    except ValueError:
        known = ", ".join(m.id for m in species.demographic_models)
        raise InputError(
            f"--model {model}: not a stdpopsim HomSap model, a demes .yaml file or {FIVE_CONTINENTS} "
            f"(HomSap models: {known})"
        ) from None
    pops = [p.name for p in dm.populations if p.default_sampling_time is not None
            and p.default_sampling_time == 0] or [p.name for p in dm.populations]
    return ModelSpec(
        dm.id, dm.model, pops, [1.0] * len(pops),
        float(mutation_rate or dm.mutation_rate or species.genome.mean_mutation_rate),
        float(recombination_rate or species.genome.mean_recombination_rate),
    )


def allocate(n: int, weights: list[float]) -> list[int]:
    """Split ``n`` people over groups in proportion to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _simulate_chunk(args):
    """One independent chunk: (positions, REF, ALT, dosages (sites, n) int8)."""
    import msprime

    spec, samples, length, seeds, maf = args
    ts = msprime.sim_ancestry(
        samples=samples, demography=spec.demography, sequence_length=length,
        recombination_rate=spec.recombination_rate, random_seed=seeds[0], ploidy=2,
    )
    ts = msprime.sim_mutations(ts, rate=spec.mutation_rate, random_seed=seeds[1])
    muts = ts.tables.mutations
    sites = ts.tables.sites
    per_site = np.bincount(muts.site, minlength=ts.num_sites)
    keep = np.flatnonzero(per_site == 1)  # biallelic: exactly one mutation
    n = ts.num_individuals
    if len(keep) == 0:
        return np.zeros(0, np.int64), [], [], np.zeros((0, n), np.int8)
    hap = ts.genotype_matrix()[keep]  # (sites, 2n), 1 = derived
    dos = (hap[:, 0::2] + hap[:, 1::2]).astype(np.int8)
    freq = dos.sum(axis=1) / (2 * n)
    ok = np.minimum(freq, 1 - freq) >= maf
    keep, dos = keep[ok], dos[ok]
    pos = sites.position[keep].astype(np.int64) + 1  # 1-based
    anc = np.array([sites[i].ancestral_state for i in keep], dtype=object)
    site_to_mut = np.full(ts.num_sites, -1)
    site_to_mut[muts.site] = np.arange(muts.num_rows)
    der = np.array([muts[site_to_mut[i]].derived_state for i in keep], dtype=object)
    return pos, list(anc), list(der), dos


def simulate(
    out: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    samples: int = 1000,
    length: float = 20e6,
    seed: int = 1,
    maf: float = 0.01,
    chunk_bp: float = 5e6,
    workers: int | None = None,
    mutation_rate: float | None = None,
    recombination_rate: float | None = None,
    progress: bool = True,
) -> dict:
    """Simulate a cohort and write ``out.bed/.bim/.fam`` and ``out.labels.tsv``.

    Returns a summary: sample counts per population and the number of variants.
    """
    from bed_reader import to_bed

    from seq2king.fileio import atomic_files

    if samples < 2:
        raise InputError(f"--samples {samples}: need at least 2 people")
    if length <= 0:
        raise InputError(f"--length {length}: must be positive (base pairs)")
    if not 0 <= maf < 0.5:
        raise InputError(f"--maf {maf}: must be in [0, 0.5)")
    spec = load_model(model, mutation_rate, recombination_rate)
    counts = allocate(samples, spec.proportions)
    sample_dict = {p: c for p, c in zip(spec.populations, counts) if c > 0}
    n_chunks = max(1, int(np.ceil(length / chunk_bp)))
    bounds = np.linspace(0, length, n_chunks + 1).round().astype(np.int64)
    seqs = np.random.SeedSequence(seed).spawn(n_chunks)
    jobs = [
        (spec, sample_dict, float(bounds[i + 1] - bounds[i]),
         [int(s) for s in seqs[i].generate_state(2, dtype=np.uint32) % (2**31 - 1) + 1], maf)
        for i in range(n_chunks)
    ]
    workers = workers or min(os.cpu_count() or 1, n_chunks)
    results = [None] * n_chunks
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(length), unit="bp", unit_scale=True, desc=f"simulate {spec.name}", leave=False)
    try:
        if workers == 1 or n_chunks == 1:
            for i, job in enumerate(jobs):
                results[i] = _simulate_chunk(job)
                if bar is not None:
                    bar.update(int(job[2]))
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                futs = {pool.submit(_simulate_chunk, job): i for i, job in enumerate(jobs)}
                from concurrent.futures import as_completed

                for fut in as_completed(futs):
                    i = futs[fut]
                    results[i] = fut.result()
                    if bar is not None:
                        bar.update(int(jobs[i][2]))
    finally:
        if bar is not None:
            bar.close()

    pos = np.concatenate([r[0] + bounds[i] for i, r in enumerate(results)])
    ref = [a for r in results for a in r[1]]
    alt = [a for r in results for a in r[2]]
    dos = np.concatenate([r[3] for r in results], axis=0)
    if len(pos) == 0:
        raise InputError(f"no variants with MAF >= {maf} in {length:.0f} bp; simulate a longer --length")

    # Individuals come out population by population in sample_dict order.
    pop_of = [p for p, c in sample_dict.items() for _ in range(c)]
    width = len(str(samples))
    iids = [f"{p}_{i + 1:0{width}d}" for i, p in enumerate(pop_of)]
    out = str(out)
    paths = [out + ".bed", out + ".bim", out + ".fam", out + ".labels.tsv"]
    with atomic_files(*paths) as (bed, bim, fam, lab):
        to_bed(
            bed, np.ascontiguousarray(dos.T), fam_filepath=fam, bim_filepath=bim,
            properties={
                "fid": iids, "iid": iids, "sex": [0] * len(iids),
                "chromosome": ["1"] * len(pos), "sid": [f"1:{p}" for p in pos],
                "bp_position": pos, "allele_1": alt, "allele_2": ref,
            },
        )
        with open(lab, "w") as fh:
            fh.write("sample\tpopulation\tsuperpopulation\n")
            for iid, p in zip(iids, pop_of):
                fh.write(f"{iid}\t{p}\t{(spec.superpopulations or {}).get(p, p)}\n")
    return {"model": spec.name, "samples": dict(sample_dict), "variants": int(len(pos)),
            "length": int(length), "files": paths}

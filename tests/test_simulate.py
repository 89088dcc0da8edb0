"""Offline simulation: deterministic bytes, labels, MAF filter, both shipped models."""

import hashlib

import numpy as np
import pytest

from seq2king.errors import InputError
from seq2king.genetics.genotypes import BedSource
from seq2king.genetics.labels import read_labels
from seq2king.genetics.simulate import allocate, fst_per_variant, load_model, simulate


def digest(prefix):
    h = hashlib.sha256()
    for ext in (".bed", ".bim", ".fam", ".labels.tsv"):
        h.update(open(f"{prefix}{ext}", "rb").read())
    return h.hexdigest()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = simulate(tmp_path / "a", samples=40, length=1.5e6, chunk_bp=5e5, seed=9, workers=1, progress=False)
    simulate(tmp_path / "b", samples=40, length=1.5e6, chunk_bp=5e5, seed=9, workers=2, progress=False)
    simulate(tmp_path / "c", samples=40, length=1.5e6, chunk_bp=5e5, seed=10, workers=1, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert a["samples"] == {"AFR": 10, "EUR": 10, "ASIA": 10, "ADMIX": 10}


def test_outputs_are_valid_and_maf_filtered(tmp_path):
    info = simulate(tmp_path / "s", samples=30, length=1e6, seed=2, maf=0.1, workers=1, progress=False)
    src = BedSource(tmp_path / "s")
    g = src.read_all().astype(float)
    assert g.shape == (30, info["variants"]) and info["variants"] > 100
    freq = g.mean(axis=0) / 2
    assert (np.minimum(freq, 1 - freq) >= 0.1 - 1e-12).all()
    assert (np.diff(src.variants.pos) > 0).all()
    header = open(tmp_path / "s.labels.tsv").readline().rstrip("\n").split("\t")
    assert header == ["sample", "population", "superpopulation"]
    labels = read_labels(tmp_path / "s.labels.tsv", src.samples.iid)
    assert sorted(set(labels)) == ["ADMIX", "AFR", "ASIA", "EUR"]
    assert all(iid.startswith(lab) for iid, lab in zip(src.samples.iid, labels))


def test_five_continents_in_1000_genomes_proportions():
    spec = load_model("FiveContinents")
    assert spec.populations == ["AFR", "EUR", "EAS", "SAS", "AMR"]
    assert allocate(2504, spec.proportions) == [661, 503, 504, 489, 347]
    assert spec.mutation_rate == pytest.approx(2.36e-8)


def test_five_continents_separates_groups(tmp_path):
    """AFR people are less related to EAS people than to each other (real structure)."""
    from seq2king.genetics.king import king_matrix

    simulate(tmp_path / "f", model="FiveContinents", samples=60, length=2e6, seed=4, workers=1, progress=False)
    src = BedSource(tmp_path / "f")
    k = king_matrix(src, progress=False)
    lab = np.array(read_labels(tmp_path / "f.labels.tsv", src.samples.iid))
    np.fill_diagonal(k, np.nan)
    within = np.nanmean(k[np.ix_(lab == "EAS", lab == "EAS")])
    between = np.nanmean(k[np.ix_(lab == "EAS", lab == "AFR")])
    assert within > between + 0.05


def test_demes_file_and_bad_values(tmp_path):
    yaml = tmp_path / "two.yaml"
    yaml.write_text("time_units: generations\ndemes:\n  - name: A\n    epochs: [{end_time: 100, start_size: 1000}]\n"
                    "  - name: B\n    ancestors: [A]\n    epochs: [{start_size: 500}]\n"
                    "  - name: C\n    ancestors: [A]\n    epochs: [{start_size: 500}]\n")
    spec = load_model(str(yaml), mutation_rate=1e-8)
    assert spec.populations == ["B", "C"]
    with pytest.raises(InputError, match="mutation_rate"):
        load_model(str(yaml))
    with pytest.raises(InputError, match="--samples 1"):
        simulate(tmp_path / "x", samples=1)


def test_ancestry_panel_keeps_the_highest_fst_variants(tmp_path):
    full = simulate(tmp_path / "full", model="FiveContinents", samples=120, length=2e6, seed=3, workers=1,
                    progress=False)
    aims = simulate(tmp_path / "aims", model="FiveContinents", samples=120, length=2e6, seed=3, workers=1,
                    progress=False, aims=40)
    assert aims["variants"] == 40 < full["variants"]
    g_full = BedSource(tmp_path / "full").read_all().T
    g_aims = BedSource(tmp_path / "aims").read_all().T
    sup = read_labels(tmp_path / "full.labels.tsv", BedSource(tmp_path / "full").samples.iid)
    fst_full = fst_per_variant(g_full, sup)
    freq = g_full.mean(1) / 2
    ok = np.minimum(freq, 1 - freq) >= 0.03
    kept = fst_per_variant(g_aims, sup)
    # the 40 kept are the 40 largest Fst among variants with MAF >= 0.03, in genome order
    assert np.allclose(np.sort(kept), np.sort(fst_full[ok])[-40:])
    pos_aims = BedSource(tmp_path / "aims").variants.pos
    assert (np.diff(pos_aims) > 0).all()
    with pytest.raises(InputError, match="--aims 100000"):
        simulate(tmp_path / "x", model="FiveContinents", samples=20, length=2e5, seed=3, workers=1, progress=False,
                 aims=100000)


def test_within_continent_has_26_populations_and_more_drift_between_continents(tmp_path):
    import itertools

    from seq2king.genetics.simulate import POPULATIONS_26, hudson_fst

    info = simulate(tmp_path / "w", model="WithinContinent26", samples=26 * 8, loci=3000, length=10e6, seed=2,
                    workers=1, progress=False)
    assert info["variants"] == 3000 and len(info["samples"]) == 26 and set(info["samples"].values()) == {8}
    src = BedSource(tmp_path / "w")
    g = src.read_all().T.astype(float)
    pop = np.array(read_labels(tmp_path / "w.labels.tsv", src.samples.iid, column="population"))
    sup = np.array(read_labels(tmp_path / "w.labels.tsv", src.samples.iid, column="superpopulation"))
    assert {p: sup[pop == p][0] for p in set(pop)} == {p: c for c, ps in POPULATIONS_26.items() for p in ps}
    within, between = [], []
    for a, b in itertools.combinations(sorted(set(pop)), 2):
        f = hudson_fst(g, pop == a, pop == b)
        (within if sup[pop == a][0] == sup[pop == b][0] else between).append(f)
    # continents differ about 0.09 (Hudson), populations within them by a few thousandths
    assert 0.05 < np.median(between) < 0.15 and np.median(within) < 0.015, (np.median(between), np.median(within))


def test_within_continent_frequency_estimates_add_their_noise(tmp_path):
    """Drawing people from estimated frequencies (1000 Genomes-sized reference samples) separates
    populations by about the estimation noise, 1 / (2 n) per population, beyond their true drift."""
    import itertools

    from seq2king.genetics.simulate import hudson_fst, simulate_within_continent

    fst = {}
    for ref in (False, True):
        simulate_within_continent(tmp_path / f"w{ref}", samples=26 * 20, loci=3000, length=10e6, seed=4,
                                  workers=1, progress=False, reference=ref)
        src = BedSource(tmp_path / f"w{ref}")
        g = src.read_all().T.astype(float)
        pop = np.array(read_labels(tmp_path / f"w{ref}.labels.tsv", src.samples.iid, column="population"))
        sup = np.array(read_labels(tmp_path / f"w{ref}.labels.tsv", src.samples.iid, column="superpopulation"))
        fst[ref] = np.median([hudson_fst(g, pop == a, pop == b) for a, b in itertools.combinations(sorted(set(pop)), 2)
                              if sup[pop == a][0] == sup[pop == b][0]])
    # about 1/(2*100) from the two reference samples of a pair, on top of the true drift
    assert 0.002 < fst[True] - fst[False] < 0.012, fst


def test_streamed_chunk_equals_the_tree_sequences_genotype_matrix(tmp_path):
    """A chunk goes to its .bed part SNP by SNP; the part equals msprime's whole genotype matrix (ALT dosages,
    biallelic sites, MAF filter) computed the in-memory way; a finished simulation leaves no part behind."""
    import msprime

    from seq2king.genetics.simulate import _simulate_chunk

    spec = load_model("FiveContinents")
    samples = {"AFR": 20, "EUR": 15, "EAS": 10}
    seeds, maf = [11, 12], 0.05
    groups = ["AFR"] * 20 + ["EUR"] * 15 + ["EAS"] * 10
    pos, ref, alt, freq, fst = _simulate_chunk((spec, samples, 6e5, seeds, maf, str(tmp_path / "p.bed"), groups))
    ts = msprime.sim_ancestry(samples=samples, demography=spec.demography, sequence_length=6e5,
                              recombination_rate=spec.recombination_rate, random_seed=seeds[0], ploidy=2)
    ts = msprime.sim_mutations(ts, rate=spec.mutation_rate, random_seed=seeds[1])
    single = np.flatnonzero(np.bincount(ts.tables.mutations.site, minlength=ts.num_sites) == 1)
    hap = ts.genotype_matrix()[single]
    dos = (hap[:, 0::2] + hap[:, 1::2]).astype(np.int8)
    f = dos.sum(1) / (2 * 45)
    ok = np.minimum(f, 1 - f) >= maf
    from bed_reader import open_bed

    with open_bed(tmp_path / "p.bed", iid_count=45, sid_count=len(pos)) as bed:
        part = bed.read(dtype="int8").T
    assert len(pos) == ok.sum() > 50
    assert np.array_equal(part, dos[ok])
    assert np.array_equal(pos, ts.tables.sites.position[single[ok]].astype(int) + 1)
    assert np.allclose(freq, f[ok]) and np.allclose(fst, fst_per_variant(dos[ok], groups))
    assert [ts.site(int(i)).mutations[0].derived_state for i in single[ok]] == alt
    simulate(tmp_path / "new" / "s", samples=20, length=1e6, chunk_bp=5e5, seed=2, workers=1, progress=False)
    assert [p.name for p in (tmp_path / "new").iterdir() if p.name.startswith(".")] == []  # a new folder, no parts left

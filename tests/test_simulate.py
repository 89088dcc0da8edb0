"""Offline simulation: deterministic bytes, labels, MAF filter, both shipped models."""

import hashlib

import numpy as np
import pytest

from seq2king.errors import InputError
from seq2king.genetics.genotypes import BedSource
from seq2king.genetics.labels import read_labels
from seq2king.genetics.simulate import allocate, load_model, simulate


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

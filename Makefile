# seq2king: `make demo` runs the main job on the embedded default data,
# `make test` runs the tests. Both create and use .venv at the repo root.
VENV   := .venv
PY     := $(VENV)/bin/python
S2K    := $(VENV)/bin/seq2king
STAMP  := $(VENV)/.installed
DEMO   := outputs/demo

.PHONY: install test demo bench clean

install: $(STAMP)

# torch first, pinned: an unpinned torch pulls several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(S2K) simulate --samples 1000 --length 20e6 --seed 1 --out $(DEMO)/cohort
	$(S2K) king --bfile $(DEMO)/cohort --out $(DEMO)/cohort --table
	$(S2K) inspect $(DEMO)/cohort.king.bin --labels $(DEMO)/cohort.labels.tsv
	@echo "outputs in $(DEMO)/: cohort.bed/.bim/.fam, cohort.labels.tsv, cohort.king.bin, cohort.king.id, cohort.kin0"

bench: install
	$(PY) benchmarks/king_vs_plink2.py

clean:
	rm -rf outputs .pytest_cache

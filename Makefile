# seq2king: `make demo` runs the main job on the embedded default data,
# `make test` runs the tests. Both create and use .venv at the repo root.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench clean

install: $(STAMP)

# torch first, pinned: an unpinned torch pulls several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps bertviz==1.4.1
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) train.py
	$(PY) analyze.py run_dir=$$(ls -d outputs/train/runs/* | tail -n 1)

bench: install
	$(PY) benchmarks/king_vs_plink2.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf outputs .pytest_cache

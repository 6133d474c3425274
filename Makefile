# make test: all set-up on a fresh clone, then the test suite (CI runs this).
# make book: execute the notebooks with papermill, then build the Jupyter Book.
PROFILE ?= cpu
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-facnn

.PHONY: test book bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --timeout=900 tests

# make book [PROFILE=cpu|smoke|paper] [FRESH=1]: executes notebooks/NN_*.ipynb with papermill
# into executed/, then jupyter-book builds _build/html (execution off, warnings as errors).
book: $(STAMP)
	FRESH=$(FRESH) $(PY) -m facnn.book --profile $(PROFILE)

# make bench: speed ratios against pytorch-grad-cam, Captum and Quantus (~8 min on 2 cores);
# BENCH_ARGS="--quick" for a one-minute version, "--threads 0" for all cores (steadier: 1).
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf _build executed

# make test: all set-up on a fresh clone, then the test suite (CI runs this).
# make book: execute the notebooks with papermill, then build the Jupyter Book.
PROFILE ?= cpu
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-facnn

.PHONY: test book bench venv clean gpu-check

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
# into _build/src/notebooks/, then jupyter-book builds _build/html (execution off, warnings as errors).
book: $(STAMP)
	FRESH=$(FRESH) $(PY) -m facnn.book --profile $(PROFILE)

# make bench: speed ratios against pytorch-grad-cam, Captum and Quantus (~8 min on 2 cores);
# BENCH_ARGS="--quick" for a one-minute version, "--threads 0" for all cores (steadier: 1).
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# make gpu-check OUT=dir [PACK=../gpu-pack/cifar10]: on a machine with one CUDA GPU and its own
# torch (no venv): CUDA tests, paper-size throughput, a 5-minute CIFAR-10 training; < 9 min.
# Results in OUT/gpu_check.json. Make the pack with: python -m facnn data pack cifar10 --out DIR
GPU_PY ?= python
PACK   ?= ../gpu-pack/cifar10
gpu-check:
	@test -n "$(OUT)" || { echo "usage: make gpu-check OUT=dir [PACK=../gpu-pack/cifar10]"; exit 2; }
	PYTHONPATH=. $(GPU_PY) scripts/gpu_check.py --pack $(PACK) --out $(OUT)

clean:
	rm -rf _build executed

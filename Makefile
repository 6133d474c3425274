# make test: all set-up on a fresh clone, then the test suite (CI runs this).
# make book: execute the notebooks with papermill, then build the Jupyter Book.
PROFILE ?= cpu
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-facnn

.PHONY: test book bench venv clean gpu-check gpu-pack

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
	FRESH=$(FRESH) $(PY) -m facnnbook --profile $(PROFILE)

# make bench: speed ratios against pytorch-grad-cam, Captum and Quantus (~8 min on 2 cores);
# BENCH_ARGS="--quick" for a one-minute version, "--threads 0" for all cores (steadier: 1).
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# make gpu-pack: the CIFAR-10 pack the GPU check carries (<= 40 MB, inside the tree, ignored by git).
# make gpu-check OUT=dir: on a machine with one CUDA GPU and its own torch (no venv): CUDA
# tests, paper-size throughput, a timed CIFAR-10 training, 8 minutes; flat JSON files in OUT.
# The device tool's run gets the same line: see README, "On a GPU".
GPU_PY ?= python3
PACK   ?= data/gpu-pack/cifar10
gpu-pack: $(STAMP)
	test -f data/cifar10.npz || $(PY) ../shared/data/unpack.py cifar10 --out data
	$(PY) -m facnn data pack cifar10 --out $(PACK) --max-mb 40

gpu-check:
	@test -n "$(OUT)" || { echo "usage: make gpu-check OUT=dir [PACK=data/gpu-pack/cifar10]"; exit 2; }
	PYTHONPATH=. timeout 520 $(GPU_PY) scripts/gpu_check.py --pack $(PACK) --out $(OUT)

clean:
	rm -rf _build executed

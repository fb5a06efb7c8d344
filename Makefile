# Two entry points on a fresh machine; each creates .venv on first use:
#   make figures   the main job: every numbered notebook through papermill at $(PROFILE)
#   make test      the full test suite (what CI runs)
# `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= auto
DATA ?=
EXECUTOR ?= local
# The optional extras installed into .venv (analog: aihwkit, for the PCM tests against its own generator).
EXTRAS ?= notebooks,test,analog
OUT ?= results/notebooks/$(notdir $(basename $(PROFILE)))
# make export / make import: the archive that carries results between machines, and whether it holds the weights.
FILE ?= results-$(notdir $(basename $(PROFILE))).tar.gz
WEIGHTS ?=
REPLACE ?=
# make gpu-wheels: what the GPU machine (Python 3.12, x86-64, its own torch 2.11) lacks for a slice of training
# (benchmarks/gpu_slice.sh): brevitas and the two packages of its requirements that machine has not (its other
# requirements, packaging, sympy, torch and typing-extensions, are there; setuptools is never imported), and
# safetensors and seaborn (the paper layer, which the slice runner imports, draws with it).
GPU_WHEELS := brevitas==0.13.4 dependencies==2.0.1 unfoldNd==0.2.3 safetensors==0.8.0 seaborn==0.13.2
# The profiles whose figures are committed (the README shows them); the others are not tracked (.gitignore).
COMMITTED_FIGURES := figures/quick figures/lenet-full
NOTEBOOK = $(if $(DATA),PAPERLIB_DATA="$(abspath $(DATA))") $(if $(PACK),PAPERLIB_PACK=$(PACK)) \
	$(PY) -m paperlib.paper.notebooks \
	--profile $(PROFILE) --device $(DEVICE) --executor "$(EXECUTOR)" --out $(OUT)

# Notebook targets, with the dependencies they really have: 03 reuses networks of 01 and 02,
# 04 those of 01-03, and 05-07 load networks that 01-03 trained. Safe under make -j.
NOTEBOOKS := fig2 table1-vgg11 table1-resnet18 fig3 table2 walking-noise variance-aware noise-kinds pcm-device

.PHONY: help install figures $(NOTEBOOKS) test test-fast test-dryrun lint check-figures lab refresh-notebooks \
	export import zoo gpu-wheels

help:  ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=smoke|quick|lenet-full|gpu|paper|paper-dryrun|<file.yaml> DEVICE=auto|cpu|cuda DATA=<CIFAR-10 folder or .tar.gz> OUT=<folder>"
	@echo "             EXECUTOR=local (default: a Dask LocalCluster on every core) | '' (in the kernel) | <scheduler address>"
	@echo "             FILE=<archive of make export/import> WEIGHTS=1 (export the weights too) NB=\"01 03\" (some notebooks)"
	@echo "             REPLACE=1 (make import: move entries of other code to stale/ and take the archive's)"
	@echo "             PACK=N (the largest pack of networks trained together; default 32 LeNet-5s on CUDA, 1 on the CPU)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed  ## create .venv with the pinned packages

figures: $(NOTEBOOKS)  ## the main job: every notebook at PROFILE; figures in figures/<profile>/
	@echo "figures in figures/$(notdir $(basename $(PROFILE)))/, executed notebooks in $(OUT)"

fig2: $(VENV)/.installed  ## 01: Fig. 2, LeNet-5 QAT
	$(NOTEBOOK) 01
table1-vgg11: $(VENV)/.installed  ## 02: Table I, VGG-11
	$(NOTEBOOK) 02-vgg11
table1-resnet18: $(VENV)/.installed  ## 02: Table I, ResNet-18
	$(NOTEBOOK) 02-resnet18
fig3: fig2 table1-vgg11 table1-resnet18  ## 03: Fig. 3, noisy training
	$(NOTEBOOK) 03
table2: fig3  ## 04: Table II
	$(NOTEBOOK) 04
walking-noise: fig3  ## 05: beyond the paper, walking noise
	$(NOTEBOOK) 05
variance-aware: fig3  ## 06: beyond the paper, variance-aware noisy training
	$(NOTEBOOK) 06
noise-kinds: fig2  ## 07: beyond the paper, noise kinds
	$(NOTEBOOK) 07
pcm-device: $(VENV)/.installed  ## 08: beyond the paper, the zoo's networks on a PCM device model (trains nothing)
	$(NOTEBOOK) 08
zoo: $(VENV)/.installed  ## the zoo: write the cached LeNet-5 networks behind PROFILE's figures 01 and 03 (paperlib/zoo)
	$(if $(DATA),PAPERLIB_DATA="$(abspath $(DATA))") $(PY) -m paperlib.paper.zoo --profile $(PROFILE) --notebooks 01 03 --archs lenet5

test: $(VENV)/.installed  ## the full suite: lint, unit tests, every notebook at smoke, committed figures current (CI)
	$(MAKE) lint
	$(PY) -m pytest -m "not dryrun"
	$(MAKE) check-figures

test-fast: $(VENV)/.installed  ## the unit tier only (no notebooks, nothing slow): for development
	$(PY) -m pytest -m "not notebooks and not slow and not dryrun"

test-dryrun: $(VENV)/.installed  ## every notebook at the paper's grids, one epoch on a few images (about 40 min, 6 GB)
	$(PY) -m pytest -m dryrun

refresh-notebooks: $(VENV)/.installed  ## rerun the committed notebooks in place at smoke (NB="01 02" for some)
	PYTHONPATH=. $(PY) tests/refresh_notebooks.py $(NB)

lint: $(VENV)/.installed  ## ruff on the code, actionlint on the workflows
	$(VENV)/bin/ruff check paperlib tests benchmarks
	$(VENV)/bin/actionlint -color=false .github/workflows/*.yml

check-figures: $(VENV)/.installed  ## fail when a committed figure was made by code that differs from the checkout's
	$(PY) -m paperlib.runs.check_figures $(COMMITTED_FIGURES)

export: $(VENV)/.installed  ## pack PROFILE's results into FILE for another machine (WEIGHTS=1: weights too; NB="01 03")
	$(PY) -m paperlib.paper.transfer export --profile $(PROFILE) --out "$(FILE)" $(if $(filter 1 yes true,$(WEIGHTS)),--weights) $(NB)

import: $(VENV)/.installed  ## add the results in FILE to results/ (checks it whole first; REPLACE=1: replace other code's)
	$(PY) -m paperlib.paper.transfer import "$(FILE)" $(if $(filter 1 yes true,$(REPLACE)),--replace-other-code)

gpu-wheels: $(VENV)/.installed  ## download into wheels/ what the GPU machine lacks for benchmarks/gpu_slice.sh
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels $(GPU_WHEELS)
	@ls -l wheels/*.whl

lab: $(VENV)/.installed  ## JupyterLab with this environment as the kernel "Python (paperlib)"
	$(PY) -m ipykernel install --user --name paperlib --display-name "Python (paperlib)"
	$(VENV)/bin/jupyter lab notebooks/

# Two entry points on a fresh machine; each creates .venv on first use.
#   make figures   the main job: runs every numbered notebook (01-07) through papermill at $(PROFILE),
#                  executed copies in $(OUT), figures and CSVs in figures/
#   make test      the test suite (unit tests and smoke runs of every notebook)
# DATA: CIFAR-10 folder or the JPEG .tar.gz (default $PAPERLIB_DATA, else ./data, downloaded when missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= auto
DATA ?=
OUT ?= results/notebooks/$(notdir $(basename $(PROFILE)))
# A kernel named python3 must run in the venv; data and profile paths are made absolute (papermill runs in notebooks/).
PAPERMILL = PATH="$(abspath $(VENV))/bin:$$PATH" $(if $(DATA),PAPERLIB_DATA="$(abspath $(DATA))") \
	$(abspath $(VENV))/bin/papermill --cwd notebooks \
	-p profile $(if $(filter smoke quick paper,$(PROFILE)),$(PROFILE),$(abspath $(PROFILE))) -p device $(DEVICE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	touch $@

.PHONY: install figures test
install: $(VENV)/.installed

figures: $(VENV)/.installed
	@mkdir -p $(OUT)
	@echo "== Fig. 2 (LeNet-5 QAT), profile $(PROFILE)"
	$(PAPERMILL) notebooks/01_fig2_lenet_qat.ipynb $(OUT)/01_fig2_lenet_qat.ipynb
	@echo "== Table I, VGG-11"
	$(PAPERMILL) notebooks/02_tableI.ipynb $(OUT)/02_tableI_vgg11.ipynb -p arch vgg11
	@echo "== Table I, ResNet-18"
	$(PAPERMILL) notebooks/02_tableI.ipynb $(OUT)/02_tableI_resnet18.ipynb -p arch resnet18
	@echo "== Fig. 3 (noisy training)"
	$(PAPERMILL) notebooks/03_fig3_noisy_training.ipynb $(OUT)/03_fig3_noisy_training.ipynb
	@echo "== Table II"
	$(PAPERMILL) notebooks/04_tableII.ipynb $(OUT)/04_tableII.ipynb
	@echo "== Beyond the paper: walking noise, variance-aware training, noise kinds"
	$(PAPERMILL) notebooks/05_walking_noise.ipynb $(OUT)/05_walking_noise.ipynb
	$(PAPERMILL) notebooks/06_variance_aware.ipynb $(OUT)/06_variance_aware.ipynb
	$(PAPERMILL) notebooks/07_noise_kinds.ipynb $(OUT)/07_noise_kinds.ipynb
	@echo "figures in figures/, executed notebooks in $(OUT)"

test: $(VENV)/.installed
	$(PY) -m pytest

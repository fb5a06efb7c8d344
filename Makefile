# Two entry points on a fresh machine; each creates .venv on first use.
#   make figures   the main job (until the notebooks land: the LeNet-5 demo)
#   make test      the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EPOCHS ?= 10
DATA ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	touch $@

.PHONY: install figures test
install: $(VENV)/.installed

figures: $(VENV)/.installed
	$(PY) -m paperlib.demo --epochs $(EPOCHS) $(if $(DATA),--data $(DATA))

test: $(VENV)/.installed
	$(PY) -m pytest

# `make test` is what CI runs; `make demo` trains and draws the offline demo.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test lint train visualize demo clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

train: $(VENV)/.installed
	$(PY) train_cam.py

visualize: $(VENV)/.installed
	$(PY) visualize_cam.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

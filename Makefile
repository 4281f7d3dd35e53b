PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# exact versions of '.[dev]' (Linux x86_64, Python 3.11); `make lock` regenerates it
LOCK := requirements-lock.txt

.PHONY: demo test test-slow lint bench clean lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $$(grep '^pip==' $(LOCK))
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

lock:
	$(PYTHON) scripts/make_lock.py --out $(LOCK)

demo: $(STAMP)
	$(VENV)/bin/powmarl demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check powmarl tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV)

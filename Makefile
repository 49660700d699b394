# The two-command start: `make run` serves the demo caisse, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
CONFIG ?= config/demo.toml
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test test-fast install install-test demo-data bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -c constraints.txt -e '.[demo]'
	touch $@

# the example plugins are installed as the packages a caisse would install: the tests prove the
# plugin contract from outside the tree
EXAMPLES = examples/guichet-webhook-channel examples/guichet-prime-activite

$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt $(EXAMPLES:%=%/pyproject.toml)
	$(PIP_INSTALL) -c constraints.txt -e '.[demo,test]' $(EXAMPLES:%=-e %)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo-data: install
	$(BIN)/guichet db upgrade --config $(CONFIG)
	$(BIN)/guichet registry demo --config $(CONFIG) --count 200

run: demo-data
	$(BIN)/guichet serve --config $(CONFIG)

test: install-test
	$(BIN)/python -m pytest -q

test-fast: install-test
	$(BIN)/python -m pytest -q -m "not browser"

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP_INSTALL) -c constraints.txt -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "bench/steps.py needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache

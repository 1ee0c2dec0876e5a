# skiprnn: every target sets up its own virtual environment on first use.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
# Seeds to train and tabulate; empty: the table's own (PaperTable.seeds in skiprnn/experiment/tasks/, which
# conf/table/<table>.yaml sweeps)
SEEDS  ?=
STEPS  ?=
EPOCHS ?=
JOBS   ?= $(shell nproc)
# Hydra launcher for the sweep: local_parallel (JOBS processes here), basic (one after another), and local_jobs and
# slurm (conf/hydra/launcher/)
LAUNCHER ?= local_parallel
# Extra Hydra overrides for every reproduction, e.g. ARGS='logger=none'
ARGS   ?=
# Where a table's runs and the table itself go; another folder keeps a variant apart from the committed runs.
# A path with spaces works: RESULTS="runs/with space"
RESULTS ?= results

# What the runs are asked to be: the table checks every run's record against these, so another config's run is
# listed as a conflict instead of entering the statistics
config_overrides = $(if $(STEPS),trainer.max_steps=$(STEPS)) $(if $(EPOCHS),trainer.max_epochs=$(EPOCHS)) $(ARGS)
# n_jobs is a key of the local_parallel launcher only; the other launchers would reject it
launcher_overrides = hydra/launcher=$(LAUNCHER) $(if $(filter local_parallel,$(LAUNCHER)),hydra.launcher.n_jobs=$(JOBS))
train_overrides = $(launcher_overrides) $(config_overrides)

help: ## list the targets
	@grep -E '^[a-z0-9%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv and install skiprnn with its test tools

# pytest processes (pytest-xdist): 155 s -> 115 s on 2 idle cores (docs/layout.md). A fixed number, not -n auto,
# which counts the host's CPUs and can start dozens of torch processes in a container limited to two.
TEST_JOBS ?= 2

test: venv ## lint, then run the test suite (all but the browser tests: make test-browser runs those; TEST_JOBS=2)
	$(PY) -m ruff check src tests
	$(PY) -m pytest -m "not browser" $(if $(TEST_JOBS),-n $(TEST_JOBS))

test-fast: venv ## the test suite without the tests that start real processes (a quicker loop while editing)
	$(PY) -m pytest -m "not browser and not slow" $(if $(TEST_JOBS),-n $(TEST_JOBS))

test-browser: venv ## install Debian's Chromium if missing, then run the browser tests of the HTML reports
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(PY) -m pytest -m browser

test-slurm: venv ## a small table sweep on a one-node Slurm cluster started here, one job preempted: it must requeue, resume and finish (SKIPPED where this machine cannot host a cluster)
	PYTHON=$(PY) scripts/slurm_test.sh

bench: venv ## time training and skipping inference; writes results/bench.md
	$(PY) -m skiprnn.experiment.bench

# A table number that has no conf/table/table<N>.yaml, or a JOBS that is not a positive integer: one line, before anything runs
check_table = $(if $(wildcard conf/table/table$*.yaml),,$(error unknown table "table$*": the tables are $(patsubst conf/table/%.yaml,%,$(wildcard conf/table/table*.yaml)), e.g. make reproduce-table1))
check_jobs = $(if $(shell echo '$(JOBS)' | grep -Ex '[1-9][0-9]*'),,$(error JOBS=$(JOBS) is not allowed: JOBS must be a whole number >= 1 (parallel runs)))
# A table trained by epochs (conf/table/<table>.yaml sets trainer.max_epochs) would ignore STEPS
check_steps = $(if $(and $(STEPS),$(shell grep -l 'max_epochs' conf/table/table$*.yaml 2>/dev/null)),$(error STEPS=$(STEPS) does not apply to table$*, which trains by epochs: use EPOCHS= (e.g. EPOCHS=1 for a quick run)))

reproduce-table longer-table table: ## (a table's number is missing)
	@echo 'error: name the table by its number, e.g. make $@1 (the tables: $(patsubst conf/table/%.yaml,%,$(wildcard conf/table/table*.yaml)))' >&2; exit 2

reproduce-table%: venv ## run a table's sweep (SEEDS=0,1 STEPS=2000 for a quick one), then write results/table%.md
	@: $(check_table) $(check_jobs) $(check_steps)
	status=0; $(PY) -m skiprnn.train -m table=table$* $(if $(SEEDS),seed=$(SEEDS)) 'hydra.sweep.dir="$(RESULTS)/table$*"' \
	  $(train_overrides) || status=$$?; \
	$(PY) -m skiprnn.tables table$* $(if $(SEEDS),--seeds $(SEEDS)) --results "$(RESULTS)" $(config_overrides); exit $$status

longer-table%: venv ## train the rows a table declares a longer budget for, each from its finished run (Table 1: λ = 1e-5 to 100,000 steps; SEEDS=0,1 ARGS=...), then rebuild the table (with SEEDS, as reproduce-table% does)
	@: $(check_table) $(check_jobs)
	status=0; $(PY) -m skiprnn.longer table$* $(if $(SEEDS),--seeds $(SEEDS)) --results "$(RESULTS)" \
	  $(launcher_overrides) $(ARGS) || status=$$?; \
	$(PY) -m skiprnn.tables table$* $(if $(SEEDS),--seeds $(SEEDS)) --results "$(RESULTS)" $(config_overrides); exit $$status

table%: venv ## rebuild results/table%.md from the runs already in results/ (no training)
	@: $(check_table)
	$(PY) -m skiprnn.tables $@ $(if $(SEEDS),--seeds $(SEEDS)) --results "$(RESULTS)" $(config_overrides)

verify: venv ## retrain RUN=<run folder> from step 0 here and compare its evaluations bit for bit (STEPS=600)
	@test -n "$(RUN)" || { echo 'error: give the run folder: make verify RUN=results/table4/<row>/seed=<k> [STEPS=600]' >&2; exit 2; }
	$(PY) -m skiprnn.verify "$(RUN)" $(if $(STEPS),--steps $(STEPS))

clean-checkpoints: ## delete every checkpoint under RESULTS (default results/; finished metrics stay)
	find "$(RESULTS)" \( -name checkpoint.pt -o -name checkpoint.prev.pt \) -delete

.PHONY: help venv test test-fast test-browser test-slurm bench verify clean-checkpoints reproduce-table longer-table table

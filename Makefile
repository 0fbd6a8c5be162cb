# sweep: plan, launch and track VLM scaling-law sweeps.  `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU installs stay on this wheel; on a GPU cluster install your CUDA torch first (TORCH_SPEC= to skip).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
MLFLOW_PORT ?= 5000
# The store `make mlflow-ui` shows (the sweep's default: ./mlflow.db).
MLFLOW_UI_URI ?= sqlite:///mlflow.db
ARGS ?=
# Python keeps each module's bytecode (__pycache__, git-ignored) even where the environment sets
# PYTHONDONTWRITEBYTECODE (this machine's does): without it every process of a run or a test compiles
# torch, transformers and mlflow from source again (bench/bench_imports.py).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help install run plan test test-fast test-real-shapes bench bench-gpu gpu-check mlflow-ui dashboard-shot mlflow-server mlflow-server-stop mlflow-server-status slurm-install chromium-install slurm-up slurm-down slurm-status slurm-env clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# --no-compile: Python byte-compiles each module when it first imports it; compiling all of torch
# up front took about half of the install's time here.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile --upgrade pip
	$(BIN)/pip install -q --no-compile $(if $(TORCH_SPEC),"$(TORCH_SPEC)") -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project (torch pinned for CPU)

run: $(STAMP) ## run the sweep (default: the mini study, locally); extra overrides in ARGS="..."
	$(BIN)/python -m sweep $(ARGS)

plan: $(STAMP) ## show the plan of a grid, e.g. make plan ARGS=+grid=paper
	$(BIN)/python -m sweep plan $(ARGS)

test: $(STAMP) slurm-install chromium-install ## every test but the real-shape one: end-to-end, Ray, Slurm and browser ones included (what CI runs)
	$(BIN)/python -m pytest -q -m "not real_shapes" $(ARGS)

test-fast: $(STAMP) ## the fast tests only (seconds to a minute)
	$(BIN)/python -m pytest -q -m "not slow and not slurm" $(ARGS)

test-real-shapes: $(STAMP) ## the paper path at Qwen-1.5-0.5B / CLIP-L-336 shapes on the CPU (~14 min idle; needs ~19 GiB free)
	$(BIN)/python -m pytest -q -m real_shapes tests/test_real_shapes.py -s $(ARGS)

bench: $(STAMP) ## benchmark scripts that print figures (CPU)
	$(BIN)/python bench/bench_fit.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_adaptive.py
	$(BIN)/python bench/bench_mini_step.py
	$(BIN)/python bench/bench_imports.py

bench-gpu: $(STAMP) ## training throughput, MFU and prefill latency at real model shapes (skips without CUDA)
	$(BIN)/python bench/bench_gpu.py

gpu-check: $(STAMP) ## on a GPU node (TORCH_SPEC= keeps its torch): bench-gpu + the 7B FSDP step vs the plan's memory estimate -> bench_gpu.json/.md
	$(BIN)/python bench/gpu_check.py --out bench_gpu.json --markdown bench_gpu.md $(ARGS)

# MLflow's GenAI job runner (eight idle processes, unused by sweeps) stays off, as in scripts/mlflow-server.sh.
mlflow-ui: $(STAMP) ## the MLflow dashboard on http://127.0.0.1:$(MLFLOW_PORT) over the local store (prints each sweep's page)
	@$(BIN)/python -m sweep.dashboard urls --store "$(MLFLOW_UI_URI)" --port $(MLFLOW_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION="$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
		$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_UI_URI)" --host 127.0.0.1 --port $(MLFLOW_PORT)

dashboard-shot: $(STAMP) chromium-install ## screenshots of the mini study's runs in the MLflow UI and of its report -> docs/{dashboard,report}.png
	$(BIN)/python -m sweep.dashboard shot --store sqlite:///mlflow.db --experiment $(or $(SWEEP),mini) --out docs/dashboard.png
	$(BIN)/python -m sweep.dashboard report --page outputs/sweeps/$(or $(SWEEP),mini)/report.html --out docs/report.png

mlflow-server: $(STAMP) ## start a tracking server on 127.0.0.1:$(MLFLOW_PORT) (for clusters; see README)
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_PORT=$(MLFLOW_PORT) scripts/mlflow-server.sh start

mlflow-server-stop: ## stop the tracking server started by `make mlflow-server`
	scripts/mlflow-server.sh stop

mlflow-server-status: ## say whether the tracking server runs
	scripts/mlflow-server.sh status

slurm-install: ## install Slurm + munge + slurmdbd + MariaDB from Debian packages (root; idempotent)
	@if [ "$${SWEEP_SKIP_SLURM:-0}" = 1 ]; then echo "SWEEP_SKIP_SLURM=1: not installing Slurm"; else scripts/slurm-local.sh install; fi

chromium-install: ## install Debian's chromium for the browser tests and dashboard-shot (root; idempotent)
	@if [ "$${SWEEP_SKIP_CHROMIUM:-0}" = 1 ]; then echo "SWEEP_SKIP_CHROMIUM=1: not installing chromium"; else scripts/chromium-install.sh; fi

slurm-up: ## start a single-node Slurm on 127.0.0.1 under .slurm/
	scripts/slurm-local.sh start "$(abspath .slurm)"

slurm-down: ## stop it
	scripts/slurm-local.sh stop "$(abspath .slurm)"

slurm-status: ## show the daemons of .slurm/ and sinfo
	scripts/slurm-local.sh status "$(abspath .slurm)"

slurm-env: ## print the client environment; use: eval "$$(make -s slurm-env)"
	@scripts/slurm-local.sh env "$(abspath .slurm)"

clean: ## remove local results (outputs/, mlflow.db, mlruns/); keeps .venv
	rm -rf outputs mlflow.db mlruns

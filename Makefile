# Two commands do everything on a fresh machine with Python 3.10+ and make:
#   make demo   the main job (until the camera app lands: model summary, ONNX export, face comparison)
#   make test   lint and the test suite
# Both create the virtual environment in $(VENV) first when it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; a looser requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
SHARED ?= $(or $(EDGE_FACENET_SHARED),../shared)
LFW ?= $(SHARED)/data/lfw
BIN := $(VENV)/bin
DEMO_DIR := build/demo

.PHONY: setup demo test lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $@

demo: setup
	@echo "== 1. The embedder family =="
	$(BIN)/python train/summary.py
	@echo "== 2. Export nn4_small2 to ONNX (random weights: no trained model exists yet) =="
	$(BIN)/python export/export_onnx.py --arch nn4_small2 --output $(DEMO_DIR)/nn4_small2_random.onnx
	@echo "== 3. Embed faces through ONNX Runtime with the preprocessing the model's metadata gives =="
	@if [ -d "$(LFW)/images/Serena_Williams" ]; then \
		$(BIN)/python samples/compare_faces.py --model $(DEMO_DIR)/nn4_small2_random.onnx --box 65 68 120 120 \
			$(LFW)/images/Serena_Williams/Serena_Williams_0001.jpg $(LFW)/images/Serena_Williams/Serena_Williams_0002.jpg \
			$(LFW)/images/Tony_Blair/Tony_Blair_0001.jpg $(LFW)/images/Tony_Blair/Tony_Blair_0002.jpg; \
	else \
		echo "LFW not found at $(LFW): set EDGE_FACENET_SHARED to the shared data folder to embed real faces"; \
	fi

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache *.egg-info

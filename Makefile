# Two commands do everything on a fresh machine with Python 3.10+ and make:
#   make demo   the main job: the camera app names people in a demo video (python -m edge_facenet.camera)
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
	$(BIN)/python -m pip install --quiet -e '.[train,calibrate,ann,dev]'
	touch $@

DETECTOR ?= $(SHARED)/models/face_detection_yunet_2023mar.onnx
# A local LFW copy for the demo's photos; without one they are fetched from the public LFW repository (sha256-pinned).
DEMO_LFW := $(or $(EDGE_FACENET_LFW),$(if $(wildcard $(LFW)/images),$(LFW),))
DEMO_DETECTOR := $(if $(wildcard $(DETECTOR)),--detector $(DETECTOR),)

demo: setup
	@echo "== 1. The embedder family =="
	$(BIN)/python train/summary.py
	@echo "== 2. Demo material: four LFW people the shipped model never trained on, two photos each; a video of them and a stranger =="
	EDGE_FACENET_LFW=$(DEMO_LFW) $(BIN)/python -m edge_facenet.camera.demo --out $(DEMO_DIR)
	@echo "== 3. The camera app, headless, on the demo video (INT8 model on a CPU; tracking on) =="
	$(BIN)/python -m edge_facenet.camera --gallery $(DEMO_DIR)/people --source $(DEMO_DIR)/demo.mp4 --no-display \
		--output $(DEMO_DIR)/annotated.mp4 $(DEMO_DETECTOR)

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

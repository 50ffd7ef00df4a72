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

DETECTOR ?= $(SHARED)/models/face_detection_yunet_2023mar.onnx
DEMO_MODEL := $(DEMO_DIR)/nn4_small2_random.onnx
DEMO_PEOPLE := Tony_Blair Serena_Williams Colin_Powell Gloria_Macapagal_Arroyo Vladimir_Putin

demo: setup
	@echo "== 1. The embedder family =="
	$(BIN)/python train/summary.py
	@echo "== 2. Export nn4_small2 to ONNX (random weights: no trained model exists yet) =="
	$(BIN)/python export/export_onnx.py --arch nn4_small2 --output $(DEMO_MODEL)
	@if [ ! -d "$(LFW)/images" ] || [ ! -f "$(DETECTOR)" ]; then \
		echo "LFW or YuNet not found under $(SHARED): set EDGE_FACENET_SHARED to the shared data folder for steps 3-4"; \
		exit 0; \
	fi; \
	echo "== 3. Detect, align and embed LFW faces; preprocessing comes from the model's metadata =="; \
	$(BIN)/python samples/compare_faces.py --model $(DEMO_MODEL) --detector $(DETECTOR) \
		$(LFW)/images/Serena_Williams/Serena_Williams_0001.jpg $(LFW)/images/Serena_Williams/Serena_Williams_0002.jpg \
		$(LFW)/images/Tony_Blair/Tony_Blair_0001.jpg $(LFW)/images/Tony_Blair/Tony_Blair_0002.jpg || exit 1; \
	echo "== 4. Enrol five people (one photo each), identify photos, reject a stranger =="; \
	rm -rf $(DEMO_DIR)/people && for name in $(DEMO_PEOPLE); do \
		mkdir -p $(DEMO_DIR)/people/$$name && cp $(LFW)/images/$$name/$${name}_0001.jpg $(DEMO_DIR)/people/$$name/; \
	done; \
	$(BIN)/python samples/identify_photos.py --model $(DEMO_MODEL) --detector $(DETECTOR) \
		--people $(DEMO_DIR)/people --threshold 0.9999 \
		$(LFW)/images/Tony_Blair/Tony_Blair_0001.jpg $(LFW)/images/Vladimir_Putin/Vladimir_Putin_0001.jpg \
		$(LFW)/images/Tony_Blair/Tony_Blair_0002.jpg $(LFW)/images/Hugo_Chavez/Hugo_Chavez_0001.jpg

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

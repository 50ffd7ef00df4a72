# Two commands do everything on a fresh machine with Python 3.10+ and make:
#   make demo   the main job (until the camera app lands: model summary, face comparison, identification)
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
	$(BIN)/python -m pip install --quiet -e '.[train,calibrate,dev]'
	touch $@

DETECTOR ?= $(SHARED)/models/face_detection_yunet_2023mar.onnx
# People of LFW folds 6-10, whom the shipped model never saw in training; Ariel Sharon stays unenrolled.
DEMO_PEOPLE := Serena_Williams Vladimir_Putin Donald_Rumsfeld Gerhard_Schroeder Gloria_Macapagal_Arroyo

demo: setup
	@echo "== 1. The embedder family =="
	$(BIN)/python train/summary.py
	@if [ ! -d "$(LFW)/images" ] || [ ! -f "$(DETECTOR)" ]; then \
		echo "LFW or YuNet not found under $(SHARED): set EDGE_FACENET_SHARED to the shared data folder for steps 2-4"; \
		exit 0; \
	fi; \
	echo "== 2. Detect, align and embed with the shipped nn4_small2 (INT8 on a CPU; edge_facenet/models/MODEL_CARD.md) =="; \
	$(BIN)/python samples/compare_faces.py --detector $(DETECTOR) \
		$(LFW)/images/Serena_Williams/Serena_Williams_0003.jpg $(LFW)/images/Serena_Williams/Serena_Williams_0004.jpg \
		$(LFW)/images/Vladimir_Putin/Vladimir_Putin_0003.jpg $(LFW)/images/Vladimir_Putin/Vladimir_Putin_0004.jpg || exit 1; \
	echo "== 3. Enrol five people (two photos each), identify other photos, reject a stranger =="; \
	rm -rf $(DEMO_DIR)/people && for name in $(DEMO_PEOPLE); do \
		mkdir -p $(DEMO_DIR)/people/$$name && cp $(LFW)/images/$$name/$${name}_000[12].jpg $(DEMO_DIR)/people/$$name/; \
	done; \
	$(BIN)/python samples/identify_photos.py --detector $(DETECTOR) --people $(DEMO_DIR)/people \
		$(LFW)/images/Serena_Williams/Serena_Williams_0005.jpg $(LFW)/images/Vladimir_Putin/Vladimir_Putin_0005.jpg \
		$(LFW)/images/Donald_Rumsfeld/Donald_Rumsfeld_0005.jpg $(LFW)/images/Gerhard_Schroeder/Gerhard_Schroeder_0005.jpg \
		$(LFW)/images/Gloria_Macapagal_Arroyo/Gloria_Macapagal_Arroyo_0005.jpg $(LFW)/images/Ariel_Sharon/Ariel_Sharon_0001.jpg \
		|| exit 1; \
	echo "== 4. The same at threshold 0.706 (FAR 1e-2 instead of 1e-3): more people named, more strangers risked =="; \
	$(BIN)/python samples/identify_photos.py --detector $(DETECTOR) --people $(DEMO_DIR)/people --threshold 0.706 \
		$(LFW)/images/Serena_Williams/Serena_Williams_0005.jpg $(LFW)/images/Vladimir_Putin/Vladimir_Putin_0005.jpg \
		$(LFW)/images/Donald_Rumsfeld/Donald_Rumsfeld_0005.jpg $(LFW)/images/Gerhard_Schroeder/Gerhard_Schroeder_0005.jpg \
		$(LFW)/images/Gloria_Macapagal_Arroyo/Gloria_Macapagal_Arroyo_0005.jpg $(LFW)/images/Ariel_Sharon/Ariel_Sharon_0001.jpg

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

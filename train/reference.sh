#!/usr/bin/env bash
# The reference nn4_small2 of the package and its twin for the LFW protocol (edge_facenet/models/MODEL_CARD.md).
#
#   A trains without the people of people.txt folds 6-10 and is evaluated on pairs.txt folds 6-10: it is shipped.
#   B trains without the people of folds 1-5 and is evaluated on folds 1-5.
#
# Both run at once with one thread each; run it again after an interruption and it resumes from last.pt.
#
#   train/reference.sh                 # both models
#   MODELS=A train/reference.sh        # only the shipped one
#
# Needs the prepared crops (train/prepare.py) in $CROPS/lfw and $CROPS/celeba. Results: $RUNS/{A,B}/eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${EDGE_FACENET_SHARED:-../shared}
CROPS=${CROPS:-build/crops}
RUNS=${RUNS:-build/reference}
MODELS=${MODELS:-A B}
EPOCHS=${EPOCHS:-30}
BATCHES=${BATCHES:-40}
PYTHON=${PYTHON:-.venv/bin/python}
export EDGE_FACENET_DETECTOR=${EDGE_FACENET_DETECTOR:-$SHARED/models/face_detection_yunet_2023mar.onnx}

train_and_evaluate() {  # NAME EXCLUDED_FOLDS
    local name=$1 folds=$2 out="$RUNS/$1"
    mkdir -p "$out"
    if [[ ! -f "$out/eval.json" ]]; then
        OMP_NUM_THREADS=1 "$PYTHON" train/train.py \
            --data "$CROPS/lfw" --data "$CROPS/celeba" \
            --lfw-people "$SHARED/data/lfw/people.txt" --exclude-lfw-folds "$folds" \
            --exclude-celeba-lfw "$SHARED/data/celeba299/lfw_nearest.tsv" \
            --init-openface "$SHARED/models/openface_nn4_small2_v1_partial.npz" \
            --optimizer adam --lr 1e-3 -P 32 -K 4 --singletons-per-batch 16 --mining semihard \
            --epochs "$EPOCHS" --batches-per-epoch "$BATCHES" --no-progress \
            --out "$out" $([[ -f "$out/last.pt" ]] && echo --resume) >> "$out/train.log" 2>&1
        "$PYTHON" export/export_onnx.py --checkpoint "$out/best.pt" --output "$out/model.onnx" > "$out/export.log" 2>&1
        "$PYTHON" -m edge_facenet.evaluate lfw --lfw-dir "$SHARED/data/lfw" --model "$out/model.onnx" \
            --folds "$folds" --json > "$out/eval.json.tmp"
        mv "$out/eval.json.tmp" "$out/eval.json"
    fi
    echo "$name (folds $folds): $(cat "$out/eval.json")"
}

declare -A excluded=([A]=6-10 [B]=1-5)
for name in $MODELS; do
    train_and_evaluate "$name" "${excluded[$name]}" &
done
wait

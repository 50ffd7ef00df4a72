#!/usr/bin/env bash
# The ablation of the reference model's model card: six recipes with equal budgets (same steps, same batches) on one
# half of the LFW protocol. Each run trains without the people of people.txt folds 1-5 and is evaluated on pairs.txt
# folds 1-5.
#
#   train/ablation.sh            # all six runs, two at a time with one thread each
#   JOBS=1 train/ablation.sh     # one at a time
#   CELLS="openface triplet" train/ablation.sh   # only these runs
#
# Needs the prepared crops (train/prepare.py) in $CROPS/lfw and $CROPS/celeba. Results: $RUNS/<name>/eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${EDGE_FACENET_SHARED:-../shared}
CROPS=${CROPS:-build/crops}
RUNS=${RUNS:-build/ablation}
JOBS=${JOBS:-2}
EPOCHS=${EPOCHS:-5}
BATCHES=${BATCHES:-40}
PYTHON=${PYTHON:-.venv/bin/python}
export EDGE_FACENET_DETECTOR=${EDGE_FACENET_DETECTOR:-$SHARED/models/face_detection_yunet_2023mar.onnx}

common=(
    --data "$CROPS/lfw" --data "$CROPS/celeba"
    --lfw-people "$SHARED/data/lfw/people.txt" --exclude-lfw-folds 1-5
    --exclude-celeba-lfw "$SHARED/data/celeba299/lfw_nearest.tsv"
    --optimizer adam --lr 1e-3 -P 32 -K 4 --singletons-per-batch 16
    --epochs "$EPOCHS" --batches-per-epoch "$BATCHES" --no-progress
)
openface=(--init-openface "$SHARED/models/openface_nn4_small2_v1_partial.npz")
teacher=(
    --teacher "$SHARED/data/lfw/dlib_resnet_embeddings.npz"
    --teacher "$SHARED/data/celeba299/dlib_resnet_embeddings.npz" --distill-weight 1
)

run() {  # run NAME [train.py options...]
    local name=$1 out="$RUNS/$1"
    shift
    mkdir -p "$out"
    if [[ ! -f "$out/eval.json" ]]; then
        OMP_NUM_THREADS=$((2 / JOBS > 0 ? 2 / JOBS : 1)) "$PYTHON" train/train.py "${common[@]}" "$@" \
            --out "$out" $([[ -f "$out/last.pt" ]] && echo --resume) >> "$out/train.log" 2>&1
        "$PYTHON" export/export_onnx.py --checkpoint "$out/best.pt" --output "$out/model.onnx" > "$out/export.log" 2>&1
        "$PYTHON" -m edge_facenet.evaluate lfw --lfw-dir "$SHARED/data/lfw" --model "$out/model.onnx" \
            --folds 1-5 --json > "$out/eval.json.tmp"
        mv "$out/eval.json.tmp" "$out/eval.json"
    fi
    echo "$name: $(cat "$out/eval.json")"
}

cells=(
    "triplet"
    "openface ${openface[*]}"
    "teacher ${teacher[*]}"
    "openface_teacher ${openface[*]} ${teacher[*]}"
    "openface_hard ${openface[*]} --mining hard"
    "openface_noaug ${openface[*]} --no-augment"
)
export -f run
export PYTHON RUNS SHARED JOBS
export COMMON="${common[*]}"
for cell in "${cells[@]}"; do
    if [[ -z ${CELLS:-} || " $CELLS " == *" ${cell%% *} "* ]]; then echo "$cell"; fi
done | xargs -P "$JOBS" -I{} bash -c 'common=($COMMON); run {}'

# The model card's table.
"$PYTHON" - "$RUNS" <<'TABLE'
import json, sys
from pathlib import Path

print("| recipe | LFW folds 1-5 accuracy | VAL @ FAR 1e-3 | AUC |")
print("| --- | --- | --- | --- |")
for name in ("triplet", "openface", "teacher", "openface_teacher", "openface_hard", "openface_noaug"):
    path = Path(sys.argv[1]) / name / "eval.json"
    if path.is_file():
        r = json.loads(path.read_text())
        print(f"| {name} | {r['accuracy']:.3f} ± {r['std']:.3f} | {r['val_at_far_1e-3']:.3f} ± {r['val_at_far_1e-3_std']:.3f} | {r['auc']:.4f} |")
TABLE

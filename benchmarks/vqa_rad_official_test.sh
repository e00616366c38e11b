#!/usr/bin/env bash
# Score medmm's VQA model on VQA-RAD's OFFICIAL test questions, where they are available (the
# shared copy of this project has only the training questions). Three steps, one command:
#   1. pretrain the image encoder on MedPix 2.0 + COVID-19 CXR (no VQA-RAD image or label;
#      skipped when OUT/encoder/small_cnn96.pt exists; ~5 CPU min),
#   2. train configs/vqa/vqa_rad_official.yaml on FULL_ROOT's training questions (~3 CPU min),
#   3. evaluate that run on FULL_ROOT's test questions (phrase_type test_freeform / test_para).
# Usage (from the repository root, after the README's install):
#   bash benchmarks/vqa_rad_official_test.sh FULL_ROOT [OUT_DIR] [DATA_ROOT] [KEY=VALUE ...]
# (KEY=VALUE: config overrides for the training, e.g. seed=1; none for the reference result)
# FULL_ROOT: a folder in the VQA-RAD layout (`VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`)
# holding the test questions; DATA_ROOT: the folder holding medpix2/ and covid_cxr/ for step 1
# (default ../shared/data). Result: OUT_DIR/official_test.json (overall, closed and open accuracy
# with 95% CIs over images) and OUT_DIR/run/report.html. Target (issue 9): overall > 62.7%.
set -euo pipefail

full_root=${1:?usage: $0 FULL_ROOT [OUT_DIR] [DATA_ROOT] [KEY=VALUE ...]}
out=${2:-runs/vqa_rad_official_test}
data_root=${3:-../shared/data}
shift $(( $# < 3 ? $# : 3 ))
encoder="$out/encoder/small_cnn96.pt"

if [ ! -f "$full_root/VQA_RAD Dataset Public.json" ]; then
    echo "$full_root: no 'VQA_RAD Dataset Public.json' (not a VQA-RAD root)" >&2
    exit 2
fi
mkdir -p "$out"
if [ ! -f "$encoder" ]; then
    # FULL_ROOT's images (test questions' images included) are left out of pretraining
    medmm pretrain-image configs/pretrain/image_encoder.yaml "data.root=$data_root" "model.exclude_vqa_rad=$full_root" \
        trainer.progress_bar=false --out "$out/encoder_run" --encoder "$encoder"
fi
# Rerunning resumes an interrupted training from its last checkpoint (and a finished one is kept).
if [ ! -f "$out/run/metrics/val.json" ]; then
    medmm train configs/vqa/vqa_rad_official.yaml "data.root=$full_root" "model.image.pretrained=$encoder" "$@" \
        --out "$out/run"
fi
medmm evaluate "$out/run" --data "$full_root" --split test --out "$out/official_test.json"

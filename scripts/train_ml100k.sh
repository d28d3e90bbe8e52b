#!/usr/bin/env bash
# Trains and evaluates on one official ML-100K fold.
#   scripts/train_ml100k.sh [DATA_DIR] [FOLD] [WORKDIR]
set -euo pipefail
data_dir=${1:-../shared/data/ml-100k}
fold=${2:-u1}
workdir=${3:-runs/ml-100k-$fold}
ratinggan train --dataset ml-100k --data-dir "$data_dir" --fold "$fold" \
  --workdir "$workdir"

#!/usr/bin/env bash
# Trains on one ML-100K fold (or resumes it), then writes a synthetic u.data
# with one generated rating per training pair, and one for a few pairs.
#   scripts/sample_ml100k.sh [DATA_DIR] [FOLD] [WORKDIR]
# Only the ratings file is written; no MovieLens metadata is copied.
set -euo pipefail
data_dir=${1:-../shared/data/ml-100k}
fold=${2:-u1}
workdir=${3:-runs/ml-100k-$fold}

ratinggan train --dataset ml-100k --data-dir "$data_dir" --fold "$fold" \
  --workdir "$workdir" --quiet
ratinggan sample --workdir "$workdir" --out "$workdir/synthetic-ml-100k"

pairs="$workdir/pairs.csv"
printf 'userId,movieId\n1,1\n1,50\n196,242\n' > "$pairs"
ratinggan sample --workdir "$workdir" --pairs "$pairs" \
  --out "$workdir/synthetic-pairs" --seed 1 --quiet
cat "$workdir/synthetic-pairs/u.data"

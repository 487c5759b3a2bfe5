#!/usr/bin/env bash
# GNCN-PDH with its image cell swapped (model.x_cell, model.x_signal), each a brief run: 5000 MNIST
# training images, 3 epochs, the shipped config otherwise. Writes run folders under $OUT (default
# runs/x_cell) and prints each variant's best validation BCE and ToD.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/x_cell}
PREDCODE=${PREDCODE:-.venv/bin/predcode}
run() {
  local name=$1; shift
  "$PREDCODE" fit --config mnist/gncn_pdh --out "$OUT/$name" --force --quiet \
    --set data.n_train=5000 --set train.epochs=3 "$@" > "$OUT/$name.log" 2>&1
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], round(s['best_val_bce_mean'], 2), round(s['best_val_tod_mean'], 2))" "$OUT/$name/summary.json" "$name"
}
mkdir -p "$OUT"
run museum
run bernoulli_pre_activation --set model.x_cell=bernoulli --set model.x_signal=pre_activation
run laplacian_mu --set model.x_cell=laplacian
run laplacian_pre_activation --set model.x_cell=laplacian --set model.x_signal=pre_activation

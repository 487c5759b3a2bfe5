#!/usr/bin/env bash
# Train and analyse the models of results/mnist_table.md with the paper's protocol (batch 200,
# 50 epochs, 2,000 validation images): the four museum models on MNIST and GNCN-PDH on
# Fashion-MNIST. The five jobs run concurrently (one process each; on one accelerator they share it).
#
#   scripts/reproduce_table.sh [RUNS_DIR] [TRAIN_DEADLINE_S] [TOTAL_DEADLINE_S]
#
# A deadline of 0 means none. At TRAIN_DEADLINE_S a fit that is still running gets SIGINT: it stops
# cleanly after keeping its last finished epoch, and the analysis uses the best model so far (the
# run's metrics.csv says how many epochs it completed). TOTAL_DEADLINE_S bounds the analyses too.
# PYTHON picks the interpreter (default: python3 with predcode importable); N_IS_SAMPLES (default 64
# per searched mixture component; 0 skips it) the importance-sampled log p(x).
set -u
runs=${1:-runs/paper}
train_s=${2:-0}
total_s=${3:-0}
py=${PYTHON:-python3}
n_is=${N_IS_SAMPLES:-64}
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}  # no TF32 on GPUs
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.12}  # five processes, one GPU
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}  # the mixture fits run on the CPU side by side
jobs=(mnist/gncn_t1 mnist/gncn_t1_sigma mnist/gncn_t2_lsigma mnist/gncn_pdh fashion-mnist/gncn_pdh)
start=$(date +%s)

job() {
  local j=$1 dataset=${1%%/*} model=${1#*/}
  local out=$runs/$j log=$runs/${1//\//_}
  local fit_timeout=() an_timeout=()
  ((train_s > 0)) && fit_timeout=(timeout -s INT -k 30 "$train_s")
  "${fit_timeout[@]}" "$py" -m predcode fit --config "configs/$dataset/paper/$model.toml" --out "$out" --quiet \
    >"$log.fit.log" 2>&1
  echo "fit $j: exit $? after $(($(date +%s) - start)) s" >>"$log.fit.log"
  if ((total_s > 0)); then
    local left=$((total_s - ($(date +%s) - start)))
    ((left > 10)) || { echo "no time left to analyse $j" >>"$log.analyze.log"; return; }
    an_timeout=(timeout -k 10 "$left")
  fi
  "${an_timeout[@]}" "$py" -m predcode analyze --run "$out" --n-is-samples "$n_is" >"$log.analyze.log" 2>&1
  echo "analyze $j: exit $? after $(($(date +%s) - start)) s" >>"$log.analyze.log"
}

mkdir -p "$runs"
for j in "${jobs[@]}"; do job "$j" & done
wait
for j in "${jobs[@]}"; do tail -n 3 "$runs/${j//\//_}.fit.log" "$runs/${j//\//_}.analyze.log"; done

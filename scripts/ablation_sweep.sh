#!/usr/bin/env bash
# Ablations of GNCN-PDH for the BCE gap of issue 5: each variant switches one structural feature of
# the museum model (model.lateral, model.tied_feedback, model.use_dfx, ... in docs/config.md) and
# trains with the paper's protocol (configs/mnist/paper/gncn_pdh.toml, batch 200) for up to EPOCHS
# epochs. The variants run concurrently, one process each (on one accelerator they share it), and
# get SIGINT at DEADLINE_S (0: none): a fit stops cleanly, keeping its finished epochs. Then
# scripts/ablation_summary.py writes RUNS_DIR/summary.json and .md (validation BCE by epoch).
#
#   scripts/ablation_sweep.sh [RUNS_DIR] [DEADLINE_S] [EPOCHS] [VARIANT ...]
#
# With no VARIANT, all of the list below run. PYTHON picks the interpreter (default python3);
# EXTRA_SETS adds overrides to every variant (e.g. EXTRA_SETS="data.n_train=400" for a smoke test).
set -u
runs=${1:-runs/ablation}
deadline=${2:-0}
epochs=${3:-25}
shift $(($# < 3 ? $# : 3))
py=${PYTHON:-python3}
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}  # no TF32 on GPUs
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.08}  # many processes, one GPU
pdh=configs/mnist/paper/gncn_pdh.toml
t2=configs/mnist/paper/gncn_t2_lsigma.toml
declare -A variants=(
  [pdh_base]="$pdh"
  [pdh_no_lateral]="$pdh model.lateral=false"
  [pdh_self_inhibition]="$pdh model.alpha_scale=-0.15"
  [pdh_tied_feedback]="$pdh model.tied_feedback=true"
  [pdh_use_dfx]="$pdh model.use_dfx=true"
  [pdh_no_sigma]="$pdh model.learn_sigma=false"
  [pdh_error_on_z]="$pdh model.error_on_phi=false"
  [pdh_g_identity]="$pdh model.g_hidden=identity"
  [pdh_laplace_prior]="$pdh model.lmbda=0.01"
  [pdh_t1_sigma_like]="$pdh model.tied_feedback=true model.use_dfx=true model.error_on_phi=false model.g_hidden=identity model.lmbda=0.01"
  [t2_no_lateral]="$t2 model.lateral=false"
)
names=("$@")
((${#names[@]})) || names=($(printf '%s\n' "${!variants[@]}" | sort))
for name in "${names[@]}"; do
  [[ -n ${variants[$name]+x} ]] || { echo "unknown variant '$name'; known: ${!variants[*]}" >&2; exit 2; }
done
mkdir -p "$runs"
start=$(date +%s)
for name in "${names[@]}"; do
  read -r config sets <<<"${variants[$name]}"
  args=(--set "train.epochs=$epochs")
  for s in $sets ${EXTRA_SETS:-}; do args+=(--set "$s"); done
  timeout_cmd=()
  ((deadline > 0)) && timeout_cmd=(timeout -s INT -k 60 "$deadline")
  (
    "${timeout_cmd[@]}" "$py" -m predcode fit --config "$config" --out "$runs/$name" --quiet --force "${args[@]}" \
      >"$runs/$name.log" 2>&1
    echo "fit $name: exit $? after $(($(date +%s) - start)) s" >>"$runs/$name.log"
  ) &
done
wait
"$py" scripts/ablation_summary.py "$runs" "${names[@]}"

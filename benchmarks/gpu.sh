#!/usr/bin/env bash
# Issue 22's GPU measurements in one run, each step under its own time limit, within one budget:
#
#   install   JAX for the GPU (the image's, else carried wheels, else the cuda12 extra from an index)
#             and the peers' libraries (carried wheels, else existing venvs, else setup.sh + CUDA jax)
#   peak      a large float32 matmul (precision highest and default)                  gpu_bench.py peak
#   epoch     GNCN-PDH MNIST epoch, batch 200, K = 50 (300 steps); per-step fraction of the peak
#   trials    1, 2, 4, 8 vmapped trials against one
#   peers_b512, peers_b4096   benchmarks/peers/run.py: predcode direct and Gram, plain JAX, PCX 0.6.3,
#             ngc-learn 3.2.3 on the peer network (784-360x3, K = 50)
#   settle_*  settle-loop variants XLA offers without new code (command buffers / CUDA graphs, while
#             unrolling, TF32), each timed and checked against the float64 reference
#   report    results/gpu.json and results/gpu.md (and a copy of both plus the logs in $OUT if set)
#
# Usage:
#   bash benchmarks/gpu.sh [--out DIR] [--budget S] [--only STEP ...] [--skip STEP ...]
#   bash benchmarks/gpu.sh --dry-run --out DIR     # the whole logic on the CPU at tiny sizes, no installs
#   bash benchmarks/gpu.sh --wheelhouse            # on a machine with a package index: fill .whl/ for the GPU
#
# Environment: PYTHON (default python3; on the GPU machine the image's python3, which holds jax
# with its CUDA plugin), PREDCODE_COMMIT (the commit to record; default git rev-parse, which the
# device machine may lack). Steps are named as above; a step that fails or runs out of time leaves
# a 'failed' or 'timeout' entry with its log's tail and the next step runs. See benchmarks/README.md.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/benchmarks/gpu_bench.py"
dry=0 out="" budget="" wheelhouse=0 only=() skip=() mode=""
while (($#)); do
  case $1 in
    --dry-run) dry=1; mode="" ;;
    --out) out=$2; shift; mode="" ;;
    --budget) budget=$2; shift; mode="" ;;
    --wheelhouse) wheelhouse=1; mode="" ;;
    --only) mode=only ;;
    --skip) mode=skip ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "gpu.sh: unknown option $1" >&2; exit 2 ;;
    *)
      case $mode in
        only) only+=("$1") ;;
        skip) skip+=("$1") ;;
        *) echo "gpu.sh: unexpected argument $1" >&2; exit 2 ;;
      esac ;;
  esac
  shift
done
PY=${PYTHON:-python3}
whl="$root/.whl"

# ---- the wheelhouse (run on the CPU machine; the GPU machine reaches no package index) -----------
if ((wheelhouse)); then
  # Pure-Python wheels only: the peers run on the GPU machine's own jax (0.11.2 with CUDA 13 there),
  # since jax 0.4.38's or 0.12.0.1's CUDA wheels and NVIDIA libraries are gigabytes, far over the
  # 64 MiB a device call carries. PCX 0.6.3 asks for equinox < 0.12, but equinox 0.11.12 fails to
  # import on jax 0.11 (jax.interpreters.batching.NotMapped is gone); PCX 0.6.3 with equinox 0.13.8
  # on jax 0.11.2 passes the peers' float64 check (tried on the CPU, 2026-12-02).
  plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  "$PY" -m pip download -q --no-deps "${plat[@]}" -d "$whl/pcx" pcx==0.6.3 equinox==0.13.8 || exit 1
  "$PY" -m pip download -q --no-deps "${plat[@]}" -d "$whl/ngc" ngclearn==3.2.3 ngcsimlib==3.1.1 || exit 1
  excl="$(git -C "$root" rev-parse --git-path info/exclude)"
  grep -qx '/.whl/' "$excl" 2>/dev/null || echo '/.whl/' >>"$excl"
  du -sh "$whl"; ls "$whl"/*
  exit 0
fi

if ((dry)); then
  [ -n "$out" ] || { echo "gpu.sh: --dry-run needs --out DIR (a dry run's numbers are not results)" >&2; exit 2; }
  case "$(mkdir -p "$out" && cd "$out" && pwd)" in
    "$root/results" | "$root/results/"*) echo "gpu.sh: a dry run does not write under results/" >&2; exit 2 ;;
  esac
  export PREDCODE_GPU_DRY_RUN=1 JAX_PLATFORMS=cpu
  budget=${budget:-600}
else
  out=${out:-$root/results}
  budget=${budget:-360}
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/predcode-gpu.XXXXXX")"
notes="$work/notes.txt"
: >"$notes"
export PREDCODE_COMMIT=${PREDCODE_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
PREDCODE_GPU_COMMAND="bash benchmarks/gpu.sh"
((dry)) && PREDCODE_GPU_COMMAND+=" --dry-run"
export PREDCODE_GPU_COMMAND
export JAX_DEFAULT_MATMUL_PRECISION=${JAX_DEFAULT_MATMUL_PRECISION:-highest}  # float32, not TF32
# No process takes 75 % of the GPU at start: the peers' workers live side by side, and the peak
# memory each figure reports is then what it used (peak_bytes_in_use).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
base_flags=${XLA_FLAGS:-}
start=$(date +%s)
note() { echo "$*" | tee -a "$notes"; }
left() { echo $((budget - ($(date +%s) - start))); }
wanted() {  # wanted STEP: not skipped, and named by --only when --only is given (settle_* by 'settle')
  local s
  for s in "${skip[@]}"; do [[ $1 == "$s" || $1 == "$s"_* ]] && return 1; done
  ((${#only[@]})) || return 0
  for s in "${only[@]}"; do [[ $1 == "$s" || $1 == "$s"_* ]] && return 0; done
  return 1
}

# run_step NAME LIMIT_S CMD...: the command under timeout, capped by what is left of the budget; a
# command that leaves no fragment NAME.json (or NAME.raw.json) gets one saying why.
run_step() {
  local name=$1 limit=$2; shift 2
  wanted "$name" || { echo "== $name: skipped (not asked for)"; return; }
  local l; l=$(left)
  ((l < limit)) && limit=$l
  local log="$work/$name.log" t0 rc status
  if ((limit < 15)); then
    note "$name: skipped, ${l} s of the ${budget} s budget left"
    "$PY" "$bench" failed --out "$work/$name.json" --figure "$name" --status "skipped (budget)" --command "$*"
    return
  fi
  t0=$(date +%s)
  echo "== $name (limit ${limit} s): $*"
  timeout -k 5 "$limit" "$@" </dev/null >"$log" 2>&1
  rc=$?
  echo "   $name: exit $rc after $(($(date +%s) - t0)) s"
  if [ ! -f "$work/$name.json" ] && [ ! -f "$work/$name.raw.json" ] || ((rc != 0)); then
    status=failed
    ((rc == 124 || rc == 137)) && status=timeout
    tail -n 5 "$log" | sed 's/^/   | /'
    rm -f "$work/$name.raw.json"
    "$PY" "$bench" failed --out "$work/$name.json" --figure "$name" --status "$status" --rc "$rc" --log "$log" --command "$*"
  fi
}

# ---- install ------------------------------------------------------------------------------------
index_reachable() { timeout 15 "$PY" -m pip download -q --no-deps --no-cache-dir -d "$work/probe" six >/dev/null 2>&1; }
site="$work/site"
if ((dry)); then
  note "dry run: no installs; JAX on the CPU ($("$PY" -c 'import jax; print(jax.__version__)' 2>&1))"
else
  gpu_jax() { "$PY" -c 'import sys, jax; sys.exit(jax.default_backend() != "gpu")' >/dev/null 2>&1; }
  if gpu_jax; then
    note "JAX: the machine's own, $("$PY" -c 'import jax; print(jax.__version__, jax.devices()[0].device_kind)')"
  elif compgen -G "$whl/main/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site/main" "$whl"/main/*.whl
    export PYTHONPATH="$site/main:$PYTHONPATH"
    note "JAX: carried wheels of .whl/main"
  elif index_reachable; then
    "$PY" -m pip install -q --target "$site/main" "${root}[cuda12]"  # the project's cuda12 extra
    export PYTHONPATH="$site/main:$PYTHONPATH"
    note "JAX: pip install '.[cuda12]' from the package index"
  fi
  gpu_jax || { note "no JAX that sees a GPU (python: $PY): nothing measured"; exit 3; }
fi
export PREDCODE_GPU_DEVICE
PREDCODE_GPU_DEVICE=$("$PY" -c 'import jax; d = jax.devices()[0]; print(getattr(d, "device_kind", d), f"({jax.default_backend()}, jax {jax.__version__})")' 2>/dev/null || echo unknown)
nvidia-smi >"$work/nvidia-smi.txt" 2>&1 || true

# The peers: PCX and ngc-learn from carried wheels onto this machine's jax (no index here), else
# their own venvs (benchmarks/peers/setup.sh), else setup.sh and their CUDA jax from an index.
export PEERS_PYTHON_MAIN="$PY" PEERS_PYTHONPATH_MAIN="$PYTHONPATH"
peer_labels=(predcode predcode_gram plain_jax)
for v in pcx ngc; do
  V=${v^^}
  # (PREDCODE_GPU_DRY_INSTALL=1: a dry run installs the carried wheels too, to test that path on a
  # CPU machine with the device's Python and jax.)
  if compgen -G "$whl/$v/*.whl" >/dev/null && { ((!dry)) || [ "${PREDCODE_GPU_DRY_INSTALL:-0}" = 1 ]; }; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site/$v" "$whl/$v"/*.whl
    export "PEERS_PYTHON_$V=$PY" "PEERS_PYTHONPATH_$V=$site/$v:$PYTHONPATH"
  elif [ -x "$root/benchmarks/peers/.venv-$v/bin/python" ]; then
    :  # run.py uses the venv (predcode is installed into it, editable)
  elif ((!dry)) && index_reachable; then
    bash "$root/benchmarks/peers/setup.sh" >"$work/setup-$v.log" 2>&1
    jv=$([ $v = pcx ] && echo 0.4.38 || echo 0.12.0.1)
    "$root/benchmarks/peers/.venv-$v/bin/python" -m pip install -q "jax[cuda12]==$jv" >>"$work/setup-$v.log" 2>&1
  fi
  pyv="PEERS_PYTHON_$V" ppv="PEERS_PYTHONPATH_$V"
  pyv=${!pyv:-$root/benchmarks/peers/.venv-$v/bin/python}
  mod=$([ $v = pcx ] && echo pcx || echo ngclearn)
  if [ ! -x "$pyv" ]; then
    note "peer $v: not available (no carried .whl/$v, no benchmarks/peers/.venv-$v, no package index)"
  elif PYTHONPATH="${!ppv:-}" "$pyv" -c "import $mod" >"$work/import-$v.log" 2>&1; then
    if [ $v = pcx ]; then peer_labels+=(pcx_loop pcx_scan); else peer_labels+=(ngc_scan ngc_step); fi
    note "peer $v: $(PYTHONPATH="${!ppv:-}" "$pyv" -c "import jax, $mod; print('$mod on jax', jax.__version__, jax.default_backend())" 2>&1 | tail -n 1)"
  else
    note "peer $v: not available ($(tail -n 1 "$work/import-$v.log")); carry .whl/$v (gpu.sh --wheelhouse) or run benchmarks/peers/setup.sh"
  fi
done
note "install done after $(($(date +%s) - start)) s"

# ---- the measurements (sizes: real, or tiny for a dry run) --------------------------------------
if ((dry)); then
  sz_peak=(--n 128 --repeats 2) sz_epoch=(--batch 8 --K 3 --steps 4 --epochs 1)
  sz_trials=(--batch 8 --K 3 --trials 1 2 --reps 2) sz_settle=(--batch 8 --K 3 --reps 2)
  sz_peers=(--K 3 --rounds 1 --calls 1 --max-wait 0) peer_batches=(16 32) lim=120
  peer_labels=(predcode predcode_gram "${peer_labels[@]:3}")  # plain_jax: one worker less
else
  sz_peak=(--n 8192 --repeats 5) sz_epoch=(--batch 200 --K 50 --steps 300 --epochs 2)
  sz_trials=(--batch 200 --K 50 --trials 1 2 4 8 --reps 10) sz_settle=(--batch 200 --K 50 --reps 20)
  sz_peers=(--K 50 --rounds 3 --calls 3 --max-wait 0) peer_batches=(512 4096) lim=0
fi
cap() { ((lim)) && echo "$lim" || echo "$1"; }  # a dry run's limit, else the step's own

run_step peak "$(cap 40)" "$PY" "$bench" peak --out "$work/peak.json" "${sz_peak[@]}"
run_step epoch "$(cap 75)" "$PY" "$bench" epoch --out "$work/epoch.json" "${sz_epoch[@]}"
run_step trials "$(cap 75)" "$PY" "$bench" trials --out "$work/trials.json" "${sz_trials[@]}"
names=(peers_b512 peers_b4096)
run_step "${names[0]}" "$(cap 110)" "$PY" "$root/benchmarks/peers/run.py" --batch "${peer_batches[0]}" "${sz_peers[@]}" \
  --only "${peer_labels[@]}" --json "$work/${names[0]}.raw.json"
while IFS='|' read -r name flags envs; do
  xf="${base_flags:+$base_flags }$flags"
  xla=(env -u XLA_FLAGS)  # an XLA_FLAGS of blanks is read as a file name
  [ -n "${xf// /}" ] && xla=(env "XLA_FLAGS=$xf")
  # shellcheck disable=SC2086  # envs: NAME=VALUE words, split on purpose
  run_step "settle_$name" "$(cap 40)" "${xla[@]}" $envs \
    "$PY" "$bench" settle --name "$name" --out "$work/settle_$name.json" "${sz_settle[@]}"
done < <("$PY" "$bench" variants)
run_step "${names[1]}" "$(cap 110)" "$PY" "$root/benchmarks/peers/run.py" --batch "${peer_batches[1]}" "${sz_peers[@]}" \
  --only "${peer_labels[@]}" --json "$work/${names[1]}.raw.json"

# ---- report -------------------------------------------------------------------------------------
"$PY" "$bench" report --work "$work" --json "$out/gpu.json" --md "$out/gpu.md" --notes "$notes" || exit 1
echo "== wrote $out/gpu.md and $out/gpu.json after $(($(date +%s) - start)) s (budget $budget s)"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && [ "$OUT" != "$out" ]; then
  cp "$out/gpu.md" "$out/gpu.json" "$OUT/"
  tar -czf "$OUT/gpu-logs.tar.gz" -C "$work" . 2>/dev/null || true
fi
sed -n '/^## /,$p' "$out/gpu.md" | head -n 80

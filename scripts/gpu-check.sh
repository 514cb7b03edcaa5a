#!/usr/bin/env bash
# One-shot check of dsb's CUDA path on a GPU machine (no Rust, no internet needed there): runs
# in under 10 minutes and writes everything into $OUT (default ./gpu-check-out):
#
#   nvidia-smi.txt, env.txt, libs.txt   the GPU, the machine, how each CUDA library was found
#   compare/                            the same short `dsb fit` (GPU-default UNet, batch 128,
#                                       seed 0) on the CPU and on CUDA, loss per step, compared
#   torch.json, torch-loss.csv          the same UNet and training step in PyTorch (steps/s)
#   mnist/                              a ~5-minute MNIST-fixture training at the GPU defaults:
#                                       summary.json, samples.png (64 generated digits),
#                                       loss.csv, eval.json (`dsb eval`: bits/dim, FD, classes)
#   summary.json, summary.md            the numbers, the bars (pass/fail) and what to fix
#   steps.tsv, *.log                    each step's status, time and output
#
# It needs the CUDA build of dsb: target/cuda-dist/dsb-cuda.gz (scripts/build-cuda.sh), or a
# binary in DSB_BIN. The CUDA libraries it links (libcudart.so.13, libcublas.so.13 with
# libcublasLt.so.13, libcurand.so.10) are looked up in the nvidia-* packages of PyTorch's CUDA 13
# install (site-packages/nvidia/*/lib), then /usr/local/cuda*; the driver provides libcuda.so.1.
#
# Usage (from the repository root):
#   scripts/gpu-check.sh                 # on the GPU machine
#   scripts/gpu-check.sh --dry-run       # anywhere: the same flow on the CPU with tiny budgets
#                                        # (also DSB_GPU_CHECK_DEVICE=cpu)
# Environment (optional):
#   OUT                      output folder (default ./gpu-check-out)
#   DSB_BIN                  the dsb binary to test (default: unpack target/cuda-dist/dsb-cuda.gz;
#                            in a dry run without it, target/release/dsb)
#   PYTHON                   the Python with PyTorch (default: the first of python3, python,
#                            /opt/conda/bin/python, ... that imports torch); also used to find
#                            the nvidia-* library folders and to write the summary
#   DSB_GPU_CHECK_LIB_DIRS   extra library folders (colon-separated), searched first
#   DSB_GPU_CHECK_BUDGET     seconds for the whole check (default 560; dry run 1500)
#   DSB_GPU_CHECK_TRAIN_S    seconds of the MNIST training (default 300, less if the budget
#                            runs short; dry run: 20 gradient steps)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

dry=0
device=${DSB_GPU_CHECK_DEVICE:-cuda}
for arg in "$@"; do
  case $arg in
  --dry-run) dry=1 ;;
  --device=*) device=${arg#--device=} ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "gpu-check.sh: unknown argument $arg (try --help)" >&2
    exit 2
    ;;
  esac
done
[[ $device == cpu ]] && dry=1
((dry)) && device=cpu
# The run under test: "cuda", or in a dry run "device-cpu" (a second CPU run in its place).
role=$( ((dry)) && echo device-cpu || echo "$device")
[[ $device == cpu || $device == cuda ]] || {
  echo "gpu-check.sh: DSB_GPU_CHECK_DEVICE must be cuda or cpu, not $device" >&2
  exit 2
}

OUT=${OUT:-$repo/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# The Python with PyTorch: $PYTHON, else the first of these that imports torch (else python3).
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  for c in python3 python /opt/conda/bin/python /usr/local/bin/python3 /usr/bin/python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import torch' >/dev/null 2>&1; then
      PY=$c
      break
    fi
  done
  PY=${PY:-python3}
fi
budget=${DSB_GPU_CHECK_BUDGET:-$(((dry)) && echo 1500 || echo 560)}
start=$SECONDS
deadline=$((start + budget))
data_dir=$repo/tests/fixtures/mnist-5k
work=$(mktemp -d "${TMPDIR:-/tmp}/dsb-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$OUT/steps.tsv"
: >"$OUT/fix.txt"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

say() { printf '[gpu-check %4ds] %s\n' "$((SECONDS - start))" "$*"; }
fix() {
  say "FIX: $*"
  printf '%s\n' "$*" >>"$OUT/fix.txt"
}
left() { echo $((deadline - SECONDS)); }
failed=""
# A dry run on a small shared CPU gets three times the time of each step.
slow=$( ((dry)) && echo 3 || echo 1)
# cap SECONDS [RESERVE]: a step's time limit, at most SECONDS (times $slow) and leaving RESERVE
# (times $slow) for later steps.
cap() {
  local c=$(($1 * slow)) r=$((${2:-0} * slow)) l
  l=$(($(left) - r))
  ((l < c)) && c=$l
  ((c < 5)) && c=5
  echo "$c"
}
# step NAME LIMIT CMD...: runs CMD with a time limit, its output in $OUT/NAME.log; records
# ok / failed (exit code) / timeout in steps.tsv and returns CMD's status. With soft=1 in its
# environment a timeout is the planned end of the step (status "limit"), not a failure.
soft=0
step() {
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  say "$name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  local status=ok
  if ((soft && (rc == 124 || rc == 137))); then
    status=limit
    rc=0
  elif ((rc == 124 || rc == 137)); then
    status=timeout
  elif ((rc != 0)); then
    status="failed($rc)"
  fi
  printf '%s\t%s\t%d\t%d\n' "$name" "$status" "$((SECONDS - t0))" "$limit" >>"$OUT/steps.tsv"
  say "$name: $status in $((SECONDS - t0))s"
  if [[ $status != ok && $status != limit ]]; then
    failed="$failed $name"
    # The first lines hold the error; the last ones a panic's place (or a backtrace).
    if (($(wc -l <"$OUT/$name.log") > 24)); then
      { head -n 12 "$OUT/$name.log" && echo "..." && tail -n 8 "$OUT/$name.log"; } | sed 's/^/    | /'
    else
      sed 's/^/    | /' "$OUT/$name.log"
    fi
    [[ $status == timeout ]] && fix "$name ran out of its ${limit}s: see $OUT/$name.log (a slow step, or a hang)"
  fi
  return "$rc"
}
skip() {
  printf '%s\tskipped\t0\t0\n' "$1" >>"$OUT/steps.tsv"
  say "$1: skipped ($2)"
}

mode=$(((dry)) && echo "dry run (device cpu, tiny budgets)" || echo "GPU check (device cuda)")
say "$mode; output in $OUT; budget ${budget}s"

# --- 1. The machine -----------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $mode"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "uname: $(uname -a)"
  echo "cpus: $(nproc)"
  echo "memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"
  echo "glibc: $(ldd --version 2>/dev/null | head -n 1)"
  echo "python: $("$PY" --version 2>&1 || echo "$PY not found")"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1)"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -n 1 || echo none)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
gpu_name=none
if command -v nvidia-smi >/dev/null; then
  step nvidia-smi 30 nvidia-smi || true
  cp "$OUT/nvidia-smi.log" "$OUT/nvidia-smi.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >>"$OUT/nvidia-smi.txt" 2>&1 || true
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)
  cap_gpu=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
  if [[ -n ${cap_gpu:-} && $cap_gpu != 9.0 ]] && ((!dry)); then
    fix "the GPU's compute capability is $cap_gpu, but the build is for 9.0 (sm_90a): rebuild with CUDA_COMPUTE_CAP=${cap_gpu/./} scripts/build-cuda.sh"
  fi
else
  skip nvidia-smi "not installed"
  echo "nvidia-smi: not found" >"$OUT/nvidia-smi.txt"
  ((dry)) || fix "nvidia-smi not found: is this the GPU machine, with the NVIDIA driver installed?"
fi
say "GPU: $gpu_name"

# --- 2. The CUDA libraries ----------------------------------------------------------------------
# nvidia-* wheels (PyTorch's CUDA 13 install) keep them in site-packages/nvidia/<name>/lib or,
# since CUDA 13, site-packages/nvidia/cu13/lib.
lib_dirs=${DSB_GPU_CHECK_LIB_DIRS:-}
py_dirs=$("$PY" - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
for root in roots:
    for d in sorted(glob.glob(os.path.join(root, "*", "lib"))):
        print(d)
PY
)
for d in $py_dirs /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
  [[ -d $d ]] && lib_dirs=${lib_dirs:+$lib_dirs:}$d
done
export LD_LIBRARY_PATH=${lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# --- 3. The binary ------------------------------------------------------------------------------
dsb=${DSB_BIN:-}
if [[ -z $dsb ]]; then
  if [[ -f target/cuda-dist/dsb-cuda.gz ]]; then
    gzip -dc target/cuda-dist/dsb-cuda.gz >"$work/dsb"
    chmod +x "$work/dsb"
    dsb=$work/dsb
    cp target/cuda-dist/BUILD-INFO.txt "$OUT/" 2>/dev/null || true
  elif ((dry)) && [[ -x target/release/dsb ]]; then
    dsb=$repo/target/release/dsb
  fi
fi
needed="libcuda.so.1 libcudart.so.13 libcublas.so.13 libcurand.so.10" # without readelf
{
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "binary: ${dsb:-none}"
  if [[ -n $dsb ]] && command -v readelf >/dev/null; then
    needed=$(readelf -d "$dsb" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  fi
  echo "DT_NEEDED: $needed"
} >"$OUT/libs.txt"
missing_libs=""
for so in $needed; do
  found=""
  IFS=: read -r -a dirs <<<"$LD_LIBRARY_PATH"
  for d in "${dirs[@]}"; do
    [[ -n $d && -e $d/$so ]] && found=$d/$so && break
  done
  [[ -z $found ]] && found=$( (ldconfig -p 2>/dev/null || true) | awk -v so="$so" '$1 == so {print $NF; exit}')
  echo "$so => ${found:-NOT FOUND}" >>"$OUT/libs.txt"
  [[ -z $found ]] && missing_libs="$missing_libs $so"
done
if [[ -n $dsb ]]; then
  ldd "$dsb" >>"$OUT/libs.txt" 2>&1 || true
fi
cat "$OUT/libs.txt"
# The CUDA binary cannot start without every library; a dry run may fall back to the CPU build.
binary_ok=0
if [[ -n $dsb ]] && step dsb-version 30 "$dsb" --version; then
  binary_ok=1
elif ((dry)) && [[ -x target/release/dsb && $dsb != "$repo/target/release/dsb" ]]; then
  say "the CUDA binary does not start here (missing:${missing_libs:- none}); the dry run uses target/release/dsb"
  dsb=$repo/target/release/dsb
  step dsb-version 30 "$dsb" --version && binary_ok=1
fi
if ((!binary_ok)); then
  if [[ -z $dsb ]]; then
    fix "no dsb binary: run scripts/build-cuda.sh on the CPU side and carry target/cuda-dist (or set DSB_BIN)"
  elif [[ -n $missing_libs ]]; then
    fix "the dsb binary cannot start, libraries not found:$missing_libs. libcuda.so.1 comes with the NVIDIA driver; the others with PyTorch's CUDA 13 wheels (nvidia-cuda-runtime, nvidia-cublas, nvidia-curand): set PYTHON to the Python that has them, or DSB_GPU_CHECK_LIB_DIRS to their lib folders"
  elif grep -q "GLIBC" "$OUT/dsb-version.log" 2>/dev/null; then
    fix "the dsb binary needs a newer glibc than this machine's ($(ldd --version 2>/dev/null | head -n 1)): $(grep -m 1 GLIBC "$OUT/dsb-version.log"); build it on a machine with this glibc or older (BUILD-INFO.txt: needs glibc)"
  else
    fix "the dsb binary does not start: see $OUT/dsb-version.log and $OUT/libs.txt"
  fi
fi
"$dsb" --version >"$OUT/dsb-version.txt" 2>&1 || true

# --- 4. The settings ----------------------------------------------------------------------------
if ((dry)); then
  # Tiny: every step runs in seconds on two CPU cores.
  unet=(--unet-width 8 --unet-mults 1,2 --unet-blocks 1 --unet-groups 4)
  torch_unet=(--width 8 --mults 1,2 --blocks 1 --groups 4)
  batch=8
  grid=(--steps 10)
  k_accel=4
  k_cpu=4
  fit_extra=(--n-data 600 --eval-samples 32 "${unet[@]}" --batch "$batch" "${grid[@]}")
  eval_n=64
else
  # The GPU defaults of `dsb fit` for images, spelled out so that the CPU run uses them too.
  unet=(--unet-width 32 --unet-mults 1,2,2 --unet-blocks 2 --unet-groups 8)
  torch_unet=(--width 32 --mults 1,2,2 --blocks 2 --groups 8)
  batch=128
  grid=(--steps 50)
  k_accel=40
  k_cpu=5
  fit_extra=()
  eval_n=500
fi
common=(fit --data mnist --data-dir "$data_dir" "${unet[@]}" --batch "$batch" --lr 1e-3 --iters 4000
  "${grid[@]}" --seed 0 --checkpoint-every 0 --quiet)

diagnose() { # a failed dsb run's log -> what to fix
  local log=$1
  if grep -q "UNSUPPORTED_PTX_VERSION\|PTX was compiled with an unsupported toolchain" "$log"; then
    fix "the driver is older than the nvcc that wrote candle's PTX: rebuild with DSB_CUDA_TOOLKIT set to the cuda-toolkit version of the driver (nvidia-smi's 'CUDA Version')"
  elif grep -q "NO_BINARY_FOR_GPU\|INVALID_PTX\|no kernel image" "$log"; then
    fix "the kernels were built for another GPU: rebuild with CUDA_COMPUTE_CAP=<nvidia-smi --query-gpu=compute_cap> scripts/build-cuda.sh"
  elif grep -qi "out of memory" "$log"; then
    fix "CUDA out of memory: is another process using the GPU (nvidia-smi.txt)?"
  elif grep -q "built without GPU support" "$log"; then
    fix "the binary was built without --features cuda: use scripts/build-cuda.sh's target/cuda-dist/dsb-cuda.gz"
  elif grep -qi "cuda" "$log"; then
    fix "a CUDA error ($(grep -m 1 -i "error" "$log" | cut -c 1-200)): see $log"
  fi
}

# --- 5. The same short fit on the CPU and on the device -----------------------------------------
mkdir -p "$OUT/compare"
if ((binary_ok)); then
  # The device first: its rate sets the length of the MNIST training.
  # (In a dry run the device is the CPU too: the comparison is exercised on two CPU runs.)
  # Each run does at most its K steps; one stopped by its time limit keeps the steps it logged.
  soft=1
  step compare-$role "$(cap 120 360)" "$dsb" "${common[@]}" --device "$device" --stop-after "$k_accel" \
    --out "$work/compare-$role" --loss-log "$OUT/compare/loss-$role.csv" ||
    diagnose "$OUT/compare-$role.log"
  step compare-cpu "$(cap 120 330)" "$dsb" "${common[@]}" --device cpu --stop-after "$k_cpu" \
    --out "$work/compare-cpu" --loss-log "$OUT/compare/loss-cpu.csv" || true
  soft=0
  for r in "$role" cpu; do
    rows=$(($(wc -l 2>/dev/null <"$OUT/compare/loss-$r.csv" || echo 1) - 1))
    ((rows >= 2)) || fix "the $r run of the comparison logged $rows gradient steps: see $OUT/compare-$r.log"
  done
else
  skip compare-$role "no working dsb binary"
  skip compare-cpu "no working dsb binary"
fi

# --- 6. PyTorch: the same UNet and step ---------------------------------------------------------
if "$PY" -c 'import torch' >/dev/null 2>&1; then
  if ((dry)); then
    torch_args=(--device cpu --warmup 1 --steps 2 --max-seconds 60)
  else
    torch_args=(--device cuda --warmup 10 --steps 400 --max-seconds 30)
  fi
  step torch "$(cap 90 300)" "$PY" scripts/unet_reference.py --data-dir "$data_dir" "${torch_unet[@]}" \
    --batch "$batch" --n-steps "${grid[1]}" "${torch_args[@]}" --json "$OUT/torch.json" --loss-csv "$OUT/torch-loss.csv" || {
    ((dry)) || fix "the PyTorch reference failed: see $OUT/torch.log"
  }
else
  skip torch "$PY has no torch"
  fix "no PyTorch in $PY: set PYTHON to the Python that has it (no PyTorch steps/s reference)"
fi

# --- 7. MNIST at the GPU defaults for ~5 minutes, then dsb eval ---------------------------------
rate() { # gradient steps per second in a loss log, after its first `skip` rows
  "$PY" - "$1" "$2" <<'PY' 2>/dev/null || echo 0
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))[int(sys.argv[2]):]
s = sum(float(r["seconds"]) for r in rows)
print(f"{len(rows) / s:.6f}" if rows and s > 0 else 0)
PY
}
if ((binary_ok)); then
  if ((dry)); then
    iters=20
    train_s=0
  else
    eval_reserve=150 # the fit's own evaluation, dsb eval and the summary
    train_s=$(cap "${DSB_GPU_CHECK_TRAIN_S:-300}" "$eval_reserve")
    r=0
    [[ -s $OUT/compare/loss-$role.csv ]] && r=$(rate "$OUT/compare/loss-$role.csv" 5)
    iters=$("$PY" -c "import sys; r=float(sys.argv[1]); print(max(100, min(4000, int(r * $train_s))) if r > 0 else 200)" "$r")
    say "MNIST training: $iters gradient steps (measured ${r} steps/s, ${train_s}s to spend; the default is 4000)"
  fi
  if step mnist-fit "$(cap $((train_s * 3 / 2 + 120)) 70)" "$dsb" fit --data mnist --data-dir "$data_dir" \
    --device "$device" --iters "$iters" --seed 0 --out "$OUT/mnist" --loss-log "$OUT/mnist/loss.csv" \
    --json --quiet "${fit_extra[@]}"; then
    cp "$OUT/mnist-fit.log" "$OUT/mnist/fit-stdout.json"
  else
    diagnose "$OUT/mnist-fit.log"
  fi
  if [[ -f $OUT/mnist/model.safetensors ]]; then
    step mnist-eval "$(cap 150 10)" "$dsb" eval --model "$OUT/mnist" --device "$device" --n "$eval_n" \
      --json --quiet --out "$OUT/mnist/eval.json" || diagnose "$OUT/mnist-eval.log"
  else
    skip mnist-eval "no model"
  fi
  # Only for --resume; the model (model.safetensors) stays, to be evaluated again elsewhere.
  rm -f "$OUT/mnist/train-state.safetensors"
else
  skip mnist-fit "no working dsb binary"
  skip mnist-eval "no working dsb binary"
fi

# --- 8. The summary -----------------------------------------------------------------------------
say "writing the summary"
"$PY" - "$OUT" "$role" "$dry" "$gpu_name" "${unet[*]} --batch $batch ${grid[*]}" <<'PY' || fix "the summary could not be written (see above)"
import csv, json, math, os, sys

out, device, dry, gpu, settings = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
P = lambda *a: os.path.join(out, *a)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def loss_log(path):
    try:
        with open(path) as f:
            return [(float(r["loss"]), float(r["seconds"])) for r in csv.DictReader(f)]
    except Exception:
        return []


def rate(rows, skip):
    rows = rows[skip:]
    s = sum(r[1] for r in rows)
    return len(rows) / s if rows and s > 0 else None


steps = []
with open(P("steps.tsv")) as f:
    for line in f:
        name, status, secs, limit = line.rstrip("\n").split("\t")
        steps.append({"step": name, "status": status, "seconds": int(secs), "limit": int(limit)})
fixes = [l.strip() for l in open(P("fix.txt")) if l.strip()]

acc = loss_log(P("compare", f"loss-{device}.csv"))
cpu = loss_log(P("compare", "loss-cpu.csv"))
# The device's first steps load kernels and libraries; the CPU's first step warms its caches.
acc_rate = rate(acc, 5 if len(acc) > 10 else 1)
cpu_rate = rate(cpu, 1)
n = min(len(acc), len(cpu))
rel = [abs(acc[i][0] - cpu[i][0]) / max(abs(cpu[i][0]), 1e-30) for i in range(n)]
first = rel[: min(5, n)]
compare = {
    "steps_compared": n,
    "rel_diff_per_step": rel,
    "max_rel_diff_first_steps": max(first) if first else None,
    "max_rel_diff_all": max(rel) if rel else None,
    "losses_cpu": [r[0] for r in cpu[:n]],
    f"losses_{device}": [r[0] for r in acc[:n]],
}
with open(P("compare", "compare.csv"), "w") as f:
    f.write(f"step,loss_cpu,loss_{device},rel_diff\n")
    for i in range(n):
        f.write(f"{i},{cpu[i][0]!r},{acc[i][0]!r},{rel[i]:.3e}\n")

torch = load_json(P("torch.json")) or {}
fit = load_json(P("mnist", "summary.json")) or {}
ev = load_json(P("mnist", "eval.json")) or {}
e = ev.get("eval") or {}
bound = e.get("bound") or {}
mnist_log = loss_log(P("mnist", "loss.csv"))
grid = P("mnist", "samples.png")

torch_rate = torch.get("steps_per_second")
bars = {}
def bar(name, value, limit, ok):
    bars[name] = {"value": value, "bar": limit, "pass": (None if value is None else bool(ok))}

bar("first_steps_rel_loss_diff<=1e-3", compare["max_rel_diff_first_steps"], 1e-3,
    compare["max_rel_diff_first_steps"] is not None and compare["max_rel_diff_first_steps"] <= 1e-3)
bar("all_steps_rel_loss_diff<=1e-2", compare["max_rel_diff_all"], 1e-2,
    compare["max_rel_diff_all"] is not None and compare["max_rel_diff_all"] <= 1e-2)
# The replica's network must be dsb's: the same number of parameters as the MNIST model.
same = torch.get("parameters") == fit.get("parameters") if torch and fit else None
bars["pytorch_parameters==dsb"] = {"value": torch.get("parameters"), "bar": fit.get("parameters"), "pass": same}
ratio_cpu = acc_rate / cpu_rate if acc_rate and cpu_rate else None
bar(f"{device}_steps_per_s>=20x_cpu", ratio_cpu, 20.0, ratio_cpu is not None and ratio_cpu >= 20)
ratio_torch = acc_rate / torch_rate if acc_rate and torch_rate else None
bar(f"{device}_steps_per_s>=pytorch", ratio_torch, 1.0, ratio_torch is not None and ratio_torch >= 1)

summary = {
    "mode": "dry run on the CPU (bars not meaningful)" if dry else "GPU check",
    "device": device,
    "gpu": gpu,
    "steps_per_second": {
        "cpu": cpu_rate,
        device: acc_rate,
        "pytorch": torch_rate,
        "mnist_training": fit.get("steps_per_second"),
    },
    "compare": {k: v for k, v in compare.items() if not k.startswith("losses")},
    "bars": bars,
    "pytorch": torch,
    "mnist": {
        "gradient_steps": fit.get("gradient_steps"),
        "train_seconds": fit.get("train_seconds"),
        "parameters": fit.get("parameters"),
        "bits_per_dim_fit": fit.get("bits_per_dim"),
        "bits_per_dim_eval": bound.get("bits_per_dim"),
        "fd_generated": e.get("fd_generated"),
        "fd_real_floor": e.get("fd_real"),
        "fd_noise_ceiling": e.get("fd_noise"),
        "fd_n": e.get("generated"),
        "class_shares": e.get("class_histogram"),
        "classifier_accuracy": ev.get("classifier_held_out_accuracy"),
        "first_loss": mnist_log[0][0] if mnist_log else None,
        "last_loss": mnist_log[-1][0] if mnist_log else None,
        "sample_grid": grid if os.path.exists(grid) else None,
    },
    "steps": steps,
    "fix": fixes,
}
with open(P("summary.json"), "w") as f:
    json.dump(summary, f, indent=2)

def fmt(v, spec=".4g"):
    if isinstance(v, bool) or isinstance(v, int):
        return str(v)
    return "–" if v is None else format(v, spec)

m = summary["mnist"]
lines = [
    f"# dsb GPU check: {summary['mode']}",
    "",
    f"GPU: {gpu}; device under test: `{device}`; settings of the comparison and the PyTorch "
    f"reference: `{settings}`.",
    "",
    "| run | steps/s |",
    "|---|---|",
    f"| dsb on the CPU ({len(cpu)} steps) | {fmt(cpu_rate)} |",
    f"| dsb on {device} ({len(acc)} steps) | {fmt(acc_rate)} |",
    f"| PyTorch {torch.get('torch', '')} on {torch.get('device_name', '–')} "
    f"({torch.get('timed_steps', '–')} steps) | {fmt(torch_rate)} |",
    f"| dsb MNIST training at the GPU defaults ({m['gradient_steps'] or '–'} steps) "
    f"| {fmt(fit.get('steps_per_second'))} |",
    "",
    "| bar | value | pass |",
    "|---|---|---|",
]
for name, b in bars.items():
    ok = "–" if b["pass"] is None else ("yes" if b["pass"] else "NO")
    lines.append(f"| {name} | {fmt(b['value'], '.3g')} | {ok} |")
shares = m["class_shares"]
bpd = m["bits_per_dim_eval"] if m["bits_per_dim_eval"] is not None else m["bits_per_dim_fit"]
lines += [
    "",
    f"CPU against {device}, loss per step: max relative difference over the first "
    f"{len(first)} steps {fmt(compare['max_rel_diff_first_steps'], '.2e')}, over all {n} "
    f"{fmt(compare['max_rel_diff_all'], '.2e')} (compare/compare.csv). Step 0 is the untrained "
    "network (output exactly 0), so it checks the data, noise and coefficients; the later steps "
    "check the gradients and Adam.",
    "",
    f"MNIST fixture: {m['gradient_steps'] or '–'} gradient steps in "
    f"{fmt(m['train_seconds'], '.0f')} s, loss {fmt(m['first_loss'])} -> {fmt(m['last_loss'])}; "
    f"bits/dim {fmt(bpd, '.3f')}; classifier-FD {fmt(m['fd_generated'], '.1f')} "
    f"({m['fd_n'] or '–'} generated vs held-out; real-data floor {fmt(m['fd_real_floor'], '.1f')}, "
    f"noise {fmt(m['fd_noise_ceiling'], '.0f')}); classifier accuracy "
    f"{fmt(m['classifier_accuracy'], '.3f')}.",
    "Class shares 0-9: " + (" ".join(f"{x:.3f}" for x in shares) if shares else "–"),
    f"Sample grid: {m['sample_grid'] or '–'}",
    "",
    "| step | status | s | limit |",
    "|---|---|---|---|",
] + [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['limit']} |" for s in steps]
advice = {
    "first_steps_rel_loss_diff<=1e-3": "CPU and device losses differ at the first steps: compare "
    "compare/compare.csv; a difference at step 0 points at the data, noise or coefficient upload, "
    "a difference from step 1 at a kernel's forward or backward (run the unit tests of the UNet "
    "against the CPU on the device)",
    "all_steps_rel_loss_diff<=1e-2": "the curves drift apart: float rounding grows through Adam, "
    "but by more than 1% in these few steps is suspect",
    "pytorch_parameters==dsb": "scripts/unet_reference.py no longer builds dsb's UNet: compare its "
    "layers with src/nn/unet/ (value: PyTorch's count, bar: dsb's)",
}
missed = [k for k, b in bars.items() if b["pass"] is False]
if missed and not dry:
    lines += ["", "## Bars not met", ""]
    for k in missed:
        hint = advice.get(k, "profile the training step (nsys, or timings per operation)")
        lines.append(f"- {k}: {fmt(bars[k]['value'], '.3g')} (bar {bars[k]['bar']}): {hint}")
if fixes:
    lines += ["", "## What to fix", ""] + [f"- {x}" for x in fixes]
with open(P("summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
say "done in $((SECONDS - start))s; summary in $OUT/summary.md"
if [[ -n $failed || -s $OUT/fix.txt ]]; then
  say "not everything worked (failed:${failed:- none}); what to fix is in $OUT/summary.md and $OUT/fix.txt"
  exit 1
fi

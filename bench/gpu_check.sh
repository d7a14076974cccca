#!/usr/bin/env bash
# The first thing to run on any GPU machine: every CUDA path of resnas measured in one command, in at most 8 minutes.
#
#   bash bench/gpu_check.sh [OUT_FOLDER]     (default: $OUT, else runs/gpu_check-<UTC time>)
#
# Each step's output goes to OUT_FOLDER/<step>.log, the device and versions to device.txt, and a summary
# table (summary.md) is printed last. A step that fails or runs out of its time is marked so in the
# table and the next one runs. Steps, in order:
#   1. the suite's tests marked gpu (pytest -m gpu; they are skipped without CUDA);
#   2. bench/train_throughput.py on cuda: fp32, bf16 autocast and channels_last, each against its hand loop;
#   3. the smoke study, 4 trials at search.resources.gpus=0.25, all at once against one at a time, and against
#      2 trials of 2 seeds packed into one model (search.pack_seeds=2);
#   4. bench/gpu_memory.py: torch.cuda.max_memory_allocated against models.training_memory, per model;
#   5. bench/packed_seeds.py: K=4 ResNet-20 seeds packed into one model against 4 separate fits;
#   6. bench/input_pipeline.py (CPU decode; resnas has no GPU JPEG decoding).
# Without a CUDA device that torch can see, it says so in one line and exits 0.
#
# GPU_CHECK_PYTHON picks the interpreter (default .venv/bin/python; not PYTHON, which make and .ci/run set to
# the interpreter that builds the venv, without torch); GPU_CHECK_DATA_ROOT a CIFAR-10 folder for steps 2
# and 5 (default: the embedded sample, which is all a bare GPU machine has).
set -u -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-$root/runs/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)}}"
[[ "$out" == /* ]] || out="$PWD/$out"  # a relative folder is the caller's, not the checkout's
cd "$root" || exit 1
python="${GPU_CHECK_PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3 || echo python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

# One line and exit 0 where there is nothing to measure; torch's own answer, so CUDA_VISIBLE_DEVICES counts.
# (stdout only: a warning torch prints on stderr as it looks for CUDA is not an answer.)
found="$("$python" -c 'import torch
print("cuda" if torch.cuda.is_available() else
      f"torch {torch.__version__} sees no CUDA device" + ("" if torch.version.cuda else " (built without CUDA)"))' \
      2>/dev/null | tail -n 1)"
if [ -z "$found" ]; then
    echo "gpu_check: $python cannot import torch; run make setup, or set GPU_CHECK_PYTHON to an interpreter that has it" >&2
    exit 2
fi
if [ "$found" != "cuda" ]; then
    echo "gpu_check: no GPU here ($found); nothing measured"
    exit 0
fi

mkdir -p "$out" || exit 1
summary="$out/summary.md"
budget_s=470        # the 8 minutes, less a little for the summary
started=$SECONDS
data_args=()
[ -n "${GPU_CHECK_DATA_ROOT:-}" ] && data_args=(--data-root "$GPU_CHECK_DATA_ROOT")

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(hostname)"
    nvidia-smi -L 2>&1 || true
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
    "$python" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
                                      f"{torch.backends.cudnn.version()}, device 0: {torch.cuda.get_device_name(0)}, "
                                      f"bf16 supported: {torch.cuda.is_bf16_supported()}")'
    "$python" -c 'import os, sys; print(f"python {sys.version.split()[0]}, cpus {len(os.sched_getaffinity(0))}")'
    git -C "$root" log -1 --format='commit %H %s' 2>/dev/null || true
    echo "files changed since that commit: $(git -C "$root" status --short 2>/dev/null | wc -l)"
} >"$out/device.txt" 2>&1
device="$(grep -m1 '^torch ' "$out/device.txt" | sed 's/.*device 0: \([^,]*\),.*/\1/')"

rows=()

# row STEP WHAT STATUS TIME FIGURE: one line of the summary table.
row() {
    rows+=("| $1 | $2 | $3 | $4 | $5 |")
}

# step NAME CAP_SECONDS COMMAND...: run it with its output in NAME.log, for at most CAP_SECONDS or what is left.
step() {
    local name="$1" cap="$2"
    shift 2
    local left=$((budget_s - (SECONDS - started)))
    local limit=$((cap < left ? cap : left))
    step_seconds=0
    if [ "$limit" -lt 5 ]; then
        step_status="skipped: the 8 minutes are spent"
        echo "$step_status" >"$out/$name.log"
        return
    fi
    local begin=$SECONDS
    echo "[$(date -u +%H:%M:%S)] $name (at most ${limit} s): $*" >&2
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    step_seconds=$((SECONDS - begin))
    case $rc in
        0) step_status="ok" ;;
        124 | 137) step_status="timed out after ${limit} s" ;;
        *) step_status="failed (exit $rc)" ;;
    esac
}

# last_match NAME PATTERN: the last line of NAME.log that matches, or "-".
last_match() {
    local line
    line="$(grep -E -- "$2" "$out/$1.log" 2>/dev/null | tail -n 1)"
    echo "${line:--}"
}

# images_per_s NAME: fit's median images/s in a train_throughput log.
images_per_s() {
    awk '/^search.train.fit:/ {print $2}' "$out/$1.log" 2>/dev/null | tail -n 1
}

# ratio A B: A / B to 3 decimals, or "-" when either is missing.
ratio() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.3f", a / b }'
}

# 1. The suite's GPU tests. A module that fails to import (someone's work in progress) must not cost the others.
step 1-gpu-tests 100 "$python" -m pytest -q -p no:cacheprovider --continue-on-collection-errors -m gpu tests
row 1 "tests marked gpu" "$step_status" "$step_seconds s" \
    "$(last_match 1-gpu-tests '(passed|failed|error|skipped|no tests ran)')"

# 2. Trainer throughput: fp32, bf16 and channels_last, each against its hand loop.
throughput=(bench/train_throughput.py --device cuda --epochs 5 --rounds 3 "${data_args[@]}")
step 2a-throughput-fp32 45 "$python" "${throughput[@]}" --amp off --no-channels-last
fp32="$(images_per_s 2a-throughput-fp32)"
row 2a "fit fp32, contiguous (ResNet-20)" "$step_status" "$step_seconds s" \
    "${fp32:--} img/s; $(last_match 2a-throughput-fp32 '^ratio fit / loop')"
step 2b-throughput-bf16 45 "$python" "${throughput[@]}" --amp bf16 --no-channels-last
bf16="$(images_per_s 2b-throughput-bf16)"
row 2b "fit bf16 autocast" "$step_status" "$step_seconds s" \
    "${bf16:--} img/s, bf16 / fp32 = $(ratio "$bf16" "$fp32"); $(last_match 2b-throughput-bf16 '^ratio fit / loop')"
step 2c-throughput-channels-last 45 "$python" "${throughput[@]}" --amp off --channels-last
nhwc="$(images_per_s 2c-throughput-channels-last)"
row 2c "fit channels_last (fp32)" "$step_status" "$step_seconds s" "${nhwc:--} img/s, channels_last / fp32 = \
$(ratio "$nhwc" "$fp32"); $(last_match 2c-throughput-channels-last '^ratio fit / loop')"

# 3. Fractional GPUs: the smoke study's 4 trials (20 epochs of 8,192 images each), 4 at once at gpus=0.25, against
# 1 at a time at the same share. Ray shares the GPU by time-slicing, without isolating memory (Ray issues
# #41432, #49985). Both walls include Ray's start.
smoke=(-m search.run studies/smoke.yaml --no-report --set search.resources.gpus=0.25 --set train.epochs=20
       --set data.synthetic_train=8192)
step 3a-smoke-one-at-a-time 75 "$python" "${smoke[@]}" --set search.max_concurrent=1 --out "$out/smoke-one-at-a-time"
serial_status="$step_status" serial_s="$step_seconds"
step 3b-smoke-four-at-once 75 "$python" "${smoke[@]}" --set search.max_concurrent=4 --out "$out/smoke-four-at-once"
sharing="-"
[ "$serial_status/$step_status" = "ok/ok" ] && sharing="$(ratio "$serial_s" "$step_seconds")"
row 3 "4 smoke trials at gpus=0.25: 4 at once vs 1 at a time" "$serial_status / $step_status" \
    "$serial_s s / $step_seconds s" "throughput 4 at once / 1 at a time = $sharing"
# 3c. The same 4 trials as 2 trials of 2 seeds packed into one model (search.pack_seeds), both at once, against
# 3b's 4 trials at once: packing against time-slicing, for the same seeds, rows and GPU share.
shared_status="$step_status" shared_s="$step_seconds"
step 3c-smoke-packed 75 "$python" "${smoke[@]}" --set search.pack_seeds=2 --set search.max_concurrent=2 \
    --out "$out/smoke-packed"
packing="-"
[ "$shared_status/$step_status" = "ok/ok" ] && packing="$(ratio "$shared_s" "$step_seconds")"
row 3c "the 4 smoke trials as 2 of 2 packed seeds (search.pack_seeds=2)" "$step_status" "$step_seconds s" \
    "throughput packed / 4 at once = $packing"

# 4. Memory: the measured peak against models.training_memory.
step 4-gpu-memory 60 "$python" bench/gpu_memory.py
worst="$(awk '$NF ~ /^[0-9.]+$/ && NF == 7 { if ($NF > max) { max = $NF; row = $1 " " $4 } }
              END { if (row) print max " (" row ")" }' "$out/4-gpu-memory.log")"
row 4 "peak memory vs models.training_memory" "$step_status" "$step_seconds s" \
    "largest measured/estimate: ${worst:--} (the table: 4-gpu-memory.log)"

# 5. Seeds packed into one model.
step 5-packed-seeds 70 "$python" bench/packed_seeds.py --device cuda --seeds 4 --epochs 5 --rounds 2 "${data_args[@]}"
row 5 "4 ResNet-20 seeds packed vs 4 separate fits" "$step_status" "$step_seconds s" \
    "$(last_match 5-packed-seeds '^speed-up')"

# 6. The input pipeline. resnas has no GPU JPEG decoding (imagefeed decodes on CPU workers), so this measures the
# CPU pipeline that feeds this GPU.
step 6-input-pipeline 50 "$python" bench/input_pipeline.py --images 400 --rounds 1 --workers 8 --no-litdata
row 6 "input pipeline (CPU decode: GPU JPEG decoding does not exist in resnas)" "$step_status" "$step_seconds s" \
    "$(last_match 6-input-pipeline '^input pipeline:')"

{
    echo "# gpu_check on ${device:-a GPU} ($(date -u +%Y-%m-%dT%H:%M:%SZ), $((SECONDS - started)) s;" \
         "device.txt has the versions)"
    echo
    echo "| step | what | status | time | figure |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
} >"$summary"
cat "$summary"

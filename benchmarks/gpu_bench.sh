#!/usr/bin/env bash
# The GPU measurements of the performance work in one go, most important first, for a GPU lent for minutes
# (about 12 minutes on an H200, an estimate; a run cut short keeps what it wrote): GIM at the paper's global
# batch of 256 on one GPU with torch.compile, deterministic and not (cuDNN's timed algorithm choice); the
# CUDA-only tests and 240 steps of real pre-training at batch 256; the paper-stl10 preset in both precisions at
# 32 images per step (one of the original's GPUs) and at 256 (the paper's step); a profile of one GIM step; each module's objective eager and compiled
# (benchmarks/infonce_scoring.py); paper-librispeech at 8 windows per step; compile at batch 32. Every `gim bench` writes its JSON and
# markdown under OUT_DIR; the profile goes to OUT_DIR/profile.txt.
#
#   benchmarks/gpu_bench.sh OUT_DIR          (needs a CUDA GPU; runs `python3 -m greedy_infomax.cli`, so the
#                                             package need not be installed, only its dependencies and, for
#                                             the CUDA tests, its `test` extras)
set -uo pipefail
out=${1:?usage: benchmarks/gpu_bench.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
gim() { python3 -m greedy_infomax.cli "$@"; }
if [ -z "${GIM_DATA:-}" ]; then
    # No STL-10 here: 20,000 random images in its format, so the data pipeline is timed (its speed does not
    # depend on the pixels).
    mkdir -p /tmp/stl10-random/stl10_binary
    head -c $((20000 * 96 * 96 * 3)) /dev/urandom >/tmp/stl10-random/stl10_binary/unlabeled_X.bin
    export GIM_DATA=/tmp/stl10-random
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

b256=(--device cuda --presets paper-stl10 --modes simultaneous --precisions bf16 --batch_size 256)
gim bench "${b256[@]}" --train.compile true --output "$out/stl10-b256-compile"
gim bench "${b256[@]}" --train.compile true --train.deterministic false --output "$out/stl10-b256-compile-nondeterministic"

# The CUDA-only paths that CPU machines skip (pinned non-blocking copies, the late read of the skip flag, the
# stop hold), then real pre-training on the STL-10-format files: the whole loop with its loader, which `gim bench`
# does not time. The steady rate comes from the last two log rows (their rates count from step 0, compiling
# included).
batch=256
python3 -m pytest -q -p no:cacheprovider -k cuda tests/engines/test_local.py tests/test_placement.py \
    2>&1 | tee "$out/cuda-tests.txt" | tail -3
gim pretrain --preset paper-stl10 --data.batch_size "$batch" --train.precision bf16 --train.compile true \
    --train.deterministic false --train.max_steps 240 --train.log_every 80 --output "$out/runs" --name stl10-b256 \
    2>&1 | tail -3
python3 - "$out/runs/stl10-b256" "$batch" <<'EOF' | tee "$out/pretrain-rate.txt"
import json, sys
run, batch = sys.argv[1], int(sys.argv[2])
rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
(s1, r1), (s2, r2) = [(row["step"], row["samples_per_second"]) for row in rows[-2:]]
rate = (s2 - s1) * batch / (s2 * batch / r2 - s1 * batch / r1)
print(f"gim pretrain {run}: steps {s1}-{s2} at {rate:.0f} images/s; the paper's 300 epochs of 100k images: "
      f"{3e7 / rate / 3600:.2f} h")
EOF

gim bench --device cuda --presets paper-stl10 --modes end-to-end simultaneous --batch_size 32 --output "$out/stl10-b32"
gim bench --device cuda --presets paper-stl10 --modes end-to-end simultaneous --precisions bf16 \
    --batch_size 256 --output "$out/stl10-b256"

python3 - "$out/profile.txt" <<'EOF'
"""Where one GIM simultaneous step (paper-stl10, bf16, batch 256, compiled, cuDNN's timed choice) spends its time."""
import sys
import torch
from torch.profiler import ProfilerActivity, profile
from greedy_infomax.bench import Case, Schedule, build_training

switches = (("compile", True), ("deterministic", False))
step = build_training(Case("paper-stl10", "simultaneous", "bf16", "cuda", 256, Schedule(0, 0, 1), switches)).step
for _ in range(5):
    step()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for _ in range(5):
        step()
    torch.cuda.synchronize()
averages = prof.key_averages()
text = "\n\n".join(averages.table(sort_by=key, row_limit=40) for key in ("self_cuda_time_total", "cpu_time_total"))
open(sys.argv[1], "w").write(text)
print(averages.table(sort_by="self_cuda_time_total", row_limit=15))
EOF

python3 benchmarks/infonce_scoring.py --device cuda --batch_size 256 --precision bf16 --deterministic false \
    --json "$out/infonce-scoring.json"

gim bench --device cuda --presets paper-librispeech --modes end-to-end simultaneous --batch_size 8 \
    --output "$out/librispeech-b8"
gim bench --device cuda --presets paper-stl10 --modes simultaneous --precisions bf16 --train.compile true \
    --batch_size 32 --output "$out/stl10-b32-compile"

#!/usr/bin/env bash
# Peak memory (max RSS) of `gim probe` on two generated speech corpora of different sizes, for each way of
# probing: the cached protocol keeping every frame (probe.phone_frames and probe.speaker_segments null, as before
# they had defaults), the cached protocol with both counts capped, and the paper's streamed protocol; the last two
# also with oneDNN's primitive cache held to 16 entries (ONEDNN_PRIMITIVE_CACHE_CAPACITY; its default, 1024,
# keeps a convolution primitive with its scratchpad for each new utterance length until full). A
# speech-smoke-sized run with 64-channel modules (384 floats per 10 ms frame over its six modules) is trained
# for 5 steps on each corpus first. Only the trained encoder is probed, for one epoch per classifier: the memory
# a probe holds does not depend on the number of epochs. Writes OUT_DIR/probe_memory.tsv; takes about 10
# minutes on 2 busy cores.
#
#   benchmarks/probe_memory.sh OUT_DIR        (needs festival, like `gim data speech-corpus`)
set -euo pipefail
out=${1:?usage: benchmarks/probe_memory.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gim() { python3 -m greedy_infomax.cli "$@"; }
peak_mib() {  # peak RSS in MiB of the command
    /usr/bin/time -f "%M" -o "$out/time.txt" "$@" >"$out/last.log" 2>&1
    echo $(( $(cat "$out/time.txt") / 1024 ))
}

declare -A corpus=([small]="--speakers 8 --utterances 10" [large]="--speakers 8 --utterances 60")
few=(--probe.random_init false --probe.log_mel false --probe.speaker_epochs 1 --probe.phone_epochs 1 --device cpu)
printf "corpus\ttrain_utterances\ttrain_frames\tprotocol\tonednn_cache\tpeak_rss_mib\tkept\n" >"$out/probe_memory.tsv"
for size in small large; do
    gim data speech-corpus --root "$out/corpus-$size" ${corpus[$size]} >/dev/null
    gim pretrain --preset speech-smoke --data.root "$out/corpus-$size" --data.limit null \
        --model.channels "[64,64,64,64,64]" --model.gru_hidden 64 --train.max_steps 5 --train.device cpu \
        --output "$out/runs" --name "$size" >/dev/null 2>&1
    run="$out/runs/$size"
    for case in "cached-all 1024 --probe.phone_frames null --probe.speaker_segments null" \
                "cached-capped 1024 --probe.phone_frames 5000 --probe.speaker_segments 40" \
                "paper 1024 --probe.protocol paper --probe.batch_size 16" \
                "cached-capped 16 --probe.phone_frames 5000 --probe.speaker_segments 40" \
                "paper 16 --probe.protocol paper --probe.batch_size 16"; do
        set -- $case
        name=$1 cache=$2; shift 2
        mib=$(ONEDNN_PRIMITIVE_CACHE_CAPACITY=$cache peak_mib python3 -m greedy_infomax.cli probe "$run" "${few[@]}" "$@")
        read -r utterances frames kept < <(python3 - "$run" "$out/corpus-$size" <<'EOF'
import json, sys
from pathlib import Path
results, labels = json.load(open(Path(sys.argv[1], "probe.json"))), Path(sys.argv[2], "LibriSpeech100_labels_split")
train = set((labels / "train_split.txt").read_text().split())
frames = sum(len(line.split()) - 1 for line in open(labels / "converted_aligned_phones.txt") if line.split()[0] in train)
print(results["train_utterances"], frames, json.dumps(results.get("kept", {}), separators=(",", ":")))
EOF
)
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$size" "$utterances" "$frames" "$name" "$cache" "$mib" "$kept" \
            | tee -a "$out/probe_memory.tsv"
    done
done

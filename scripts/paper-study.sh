#!/usr/bin/env bash
# The paper's study on ../shared/data/sim-v1: networks trained on Au only, CdSe only and both
# (the default model's recipe, shortened to EPOCHS epochs), each evaluated on the Au and CdSe test
# images, plus the automatic Bragg filter. Writes OUT/<name>/model.safetensors, OUT/<name>/eval/
# and OUT/<name>/eval.json (<name>: au, cdse, both; the Bragg filter's in OUT/bragg/eval/ and OUT/bragg-eval.json).
# Usage: scripts/paper-study.sh [OUT] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=../shared/data/sim-v1
OUT=${1:-out/paper-study}
EPOCHS=${2:-5}
BIN=.build/release/nanofind
FLAGS="--tile 256 --batch-size 8 --lr 1e-3 --lr-schedule cosine --epochs $EPOCHS --steps-per-epoch 1000
       --normalise median3+percentile --augment robust --patience $EPOCHS --seed 1"
mkdir -p "$OUT"
for material in au cdse; do  # one material's training images, linked (manifest beside, for the groups)
  dir="$OUT/data-$material/train"
  mkdir -p "$dir"
  ln -sf "$(realpath $SIM/manifest.jsonl)" "$OUT/data-$material/manifest.jsonl"
  for f in "$SIM"/train/${material}_*; do ln -sf "$(realpath "$f")" "$dir/"; done
done
for run in au:$OUT/data-au/train cdse:$OUT/data-cdse/train both:$SIM/train; do
  name=${run%%:*}; data=${run#*:}
  mkdir -p "$OUT/$name"
  $BIN train "$data" -o "$OUT/$name/model.safetensors" $FLAGS
  $BIN evaluate "$SIM/test" --model "$OUT/$name/model.safetensors" -o "$OUT/$name/eval" --json > "$OUT/$name/eval.json"
done
$BIN evaluate "$SIM/test" --method bragg -o "$OUT/bragg/eval" --json > "$OUT/bragg-eval.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("Au only", f"{out}/au/eval.json"), ("CdSe only", f"{out}/cdse/eval.json"), ("Au + CdSe", f"{out}/both/eval.json"),
        ("Bragg filter (no learning)", f"{out}/bragg-eval.json")]
print("| trained on | Au dice | Au pixel acc. | CdSe dice | CdSe pixel acc. | pooled dice |")
print("|---|---|---|---|---|---|")
for label, path in rows:
    r = json.load(open(path)); g = r["groups"]
    print(f"| {label} | {g['Au']['dice']:.3f} | {100*g['Au']['pixel_accuracy']:.2f} % | {g['CdSe']['dice']:.3f} | "
          f"{100*g['CdSe']['pixel_accuracy']:.2f} % | {r['pooled']['dice']:.3f} |")
PY

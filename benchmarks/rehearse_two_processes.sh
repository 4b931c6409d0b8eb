#!/usr/bin/env bash
# Issue 19, item 5: two processes at real widths against one. Rehearses a recipe (default
# clip_l14_224, depth 1) under `torchrun --nproc_per_node 2` with FSDP over gloo, then in one
# process accumulating both processes' batches (the recipe's accumulation x 2, which draws the
# same noise on the same batches), and prints the largest difference between the two exported
# encoders (the goal: below 1e-4). Both go through stage 1, stage 2, the checkpoint, the
# interruption and --resume, and the export. About 25 min and 21 GB on 2 CPU cores; run it alone.
#
#   bash benchmarks/rehearse_two_processes.sh [RECIPE]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
RECIPE="${1:-recipes/paper/clip_l14_224.yaml}"
DEPTH="${DEPTH:-1}"
OUT="${OUT:-$(mktemp -d -t genhancer-two-processes-XXXX)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
ACCUM=$("$PY" - "$RECIPE" <<'EOF'
import sys
from genhancer_plugins.recipe.schema import load_recipe
print(load_recipe(sys.argv[1], []).recipe.train.gradient_accumulation_steps)
EOF
)
start=$(date +%s)
ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --nproc_per_node 2 -m genhancer_plugins.cli rehearse "$RECIPE" \
    --steps 1 --depth "$DEPTH" --set train.sharding=fsdp -o "$OUT/two" > "$OUT/two.txt" 2>&1
two_s=$(( $(date +%s) - start )); start=$(date +%s)
"$PY" -m genhancer_plugins.cli rehearse "$RECIPE" --steps 1 --depth "$DEPTH" \
    --set train.gradient_accumulation_steps=$(( ACCUM * 2 )) -o "$OUT/one" > "$OUT/one.txt" 2>&1
one_s=$(( $(date +%s) - start ))
"$PY" - "$OUT" "$two_s" "$one_s" "$ACCUM" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file
out, two_s, one_s, accum = Path(sys.argv[1]), *map(int, sys.argv[2:])
two, one = (load_file(out / name / "run" / "export" / "model.safetensors") for name in ("two", "one"))
assert two.keys() == one.keys(), sorted(two.keys() ^ one.keys())[:5]
worst, name = max((float((two[k].float() - one[k].float()).abs().max()), k) for k in two)
print("| run | s | exported encoder |\n|---|---|---|")
print(f"| 2 processes, FSDP, accumulation {accum} | {two_s} | reference |")
print(f"| 1 process, accumulation {accum * 2} | {one_s} | max abs diff {worst:.2e} ({name}) |")
print("equal to 1e-4" if worst < 1e-4 else "NOT equal to 1e-4")
EOF
echo "logs and reports in $OUT"

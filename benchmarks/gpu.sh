#!/usr/bin/env bash
# The paper's real sizes on one GPU: genhancer bench for OpenAI CLIP ViT-L/14 @224 and
# @336 with the FLUX.1 VAE and the 1.31 B denoiser, random weights (nothing is
# downloaded), at per-device batch 2 (the paper's Table 7) and swept upwards to the
# largest batch that fits; then `genhancer rehearse` of clip_l14_224 at full depth (every phase,
# 20 steps per stage, compile off and on). Writes bench-*.json/.txt and rehearse-*.json/.txt under
# $OUT (or ./bench-out): eight files, what the device tool brings back.
#
# On a GPU machine without network (the device tool's), the packages the image lacks
# come as wheels prepared here first:
#   python3 -m pip download -d .wheels --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 diffusers pydantic webdataset braceexpand
# and travel with the working tree (carry: [".wheels"]).
#
#   bash benchmarks/gpu.sh          # on the GPU
#   bash benchmarks/gpu.sh --dry    # anywhere: bench counts FLOPs only (meta device), the rehearsal runs at depth 1: checks the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
DRY=()
[[ "${1:-}" == "--dry" ]] && DRY=(--dry)
PY="${PYTHON:-python3}"
if ! "$PY" -c "import genhancer_plugins, diffusers, pydantic" 2>/dev/null; then
    [[ -d .wheels ]] && "$PY" -m pip install -q --no-index --find-links .wheels diffusers pydantic webdataset braceexpand
    "$PY" -m pip install -q --no-deps --no-build-isolation -e .   # registers the built-in plugins' entry points
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1
# source=null: random weights at the presets' sizes; bf16 on a GPU that has it (the recipes' precision)
SETS=(--set encoder.params.source=null --set tokenizer.params.source=null)
for recipe in clip_l14_224 clip_l14_336; do
    "$PY" -m genhancer_plugins.cli bench "recipes/paper/$recipe.yaml" "${SETS[@]}" "${DRY[@]}" \
        --batch-sizes 2,4,8,16,32,64 --steps 5 --warmup 2 --json > "$OUT/bench-$recipe.json"
    "$PY" - "$OUT/bench-$recipe.json" > "$OUT/bench-$recipe.txt" <<'PYEOF'
import json, sys
from genhancer_plugins.commands.bench import render_bench
print(render_bench(json.load(open(sys.argv[1]))))
PYEOF
    cat "$OUT/bench-$recipe.txt"
done

# The dress rehearsal at real size: every phase of clip_l14_224 (stage 1 and 2 with a checkpoint,
# an interruption and a resume, the export and its reload check, MMVP-VLM on its synthetic copy)
# at full depth in bf16, 20 steps per stage, torch.compile off and on. Its run directories go to
# a scratch folder: only the reports come back in $OUT. --dry: one step per stage at depth 1
# with compile off, what this script's check on a CPU can afford.
if ((${#DRY[@]})); then REHEARSAL=(--steps 1 --depth 1); COMPILE=(false); else REHEARSAL=(--steps 20); COMPILE=(false true); fi
SCRATCH="$(mktemp -d -t genhancer-gpu-rehearsal-XXXX)"
for compile in "${COMPILE[@]}"; do
    "$PY" -m genhancer_plugins.cli rehearse recipes/paper/clip_l14_224.yaml "${REHEARSAL[@]}" --gpu H200 \
        --set train.compile="$compile" --json -o "$SCRATCH/compile-$compile" > "$OUT/rehearse-compile-$compile.json" \
        || echo "rehearsal (compile $compile) failed: see $OUT/rehearse-compile-$compile.json"
    "$PY" - "$OUT/rehearse-compile-$compile.json" > "$OUT/rehearse-compile-$compile.txt" <<'PYEOF'
import json, sys
from genhancer_plugins.commands.rehearse import render_rehearsal
print(render_rehearsal(json.load(open(sys.argv[1]))))
PYEOF
    cat "$OUT/rehearse-compile-$compile.txt"
done

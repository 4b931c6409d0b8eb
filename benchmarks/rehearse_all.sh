#!/usr/bin/env bash
# Rehearses every shipped paper, ablation and LLaVA recipe on this machine (random weights at
# the real widths, every stack shortened to --depth, one step per stage) and writes the table of
# time and memory per phase per recipe into docs/rehearsal.md. Run it alone: a second torch
# process on the same cores slows both many times over. Each rehearsal writes 1-55 GB (checkpoints hold
# the optimiser states; LLaVA-13B the most) and is deleted after its report: keep about 60 GB free.
#
#   bash benchmarks/rehearse_all.sh            # every recipe, depth 1 (what fits 24 GB on 2 cores)
#   DEPTH=2 bash benchmarks/rehearse_all.sh recipes/paper/clip_l14_224.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DEPTH="${DEPTH:-1}"
OUT="${OUT:-$(mktemp -d -t genhancer-rehearse-all-XXXX)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error GENHANCER_DISABLE_PLUGINS="${GENHANCER_DISABLE_PLUGINS:-}"
if (($#)); then RECIPES=("$@"); else
    RECIPES=(recipes/paper/clip_l14_224.yaml recipes/paper/clip_l14_336.yaml recipes/paper/metaclip_l14.yaml recipes/paper/metaclip_h14.yaml
             recipes/paper/siglip_so400m_224.yaml recipes/paper/siglip_so400m_384.yaml recipes/paper/discrete_clip_l14_224.yaml
             recipes/paper/discrete_siglip_so400m_224.yaml recipes/paper/discrete_siglip_so400m_384.yaml recipes/ablations/*.yaml
             recipes/llava_vicuna7b.yaml recipes/llava_vicuna13b.yaml)
fi
results=()
for recipe in "${RECIPES[@]}"; do
    name=$(basename "$recipe" .yaml)
    [[ "$recipe" == recipes/ablations/* ]] && name="ablations-$name"
    echo "== rehearsing $recipe (depth $DEPTH) -> $OUT/$name"
    start=$(date +%s)
    "$PY" -m genhancer_plugins.cli rehearse "$recipe" --steps 1 --depth "$DEPTH" --json -o "$OUT/$name" > "$OUT/$name.json" 2> "$OUT/$name.err" || true
    echo "   $(( $(date +%s) - start )) s; report $OUT/$name.json"
    rm -rf "${OUT:?}/$name"   # at real widths a rehearsal writes tens of GB (checkpoints hold the optimiser states)
    results+=("$OUT/$name.json")
done
"$PY" tools/rehearsal_page.py --depth "$DEPTH" --doc docs/rehearsal.md "${results[@]}"
echo "table: docs/rehearsal.md (raw reports in $OUT)"

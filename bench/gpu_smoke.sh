#!/usr/bin/env bash
# GPU smoke check (issue #17): fine-tune the real SmolLM2-135M (smol135_gguf) for a few dozen
# steps in bf16-mixed on CUDA through the real entry point, then decode a stratified test slice
# (8 records per tier, strict grammar) on CUDA with the continuous engine and the hf reference;
# prints training tokens/s and MFU, decoding tokens/s. Sized for under 8 minutes on one H100/H200.
#
#   bash bench/gpu_smoke.sh            # OUT=/tmp/gpu_smoke by default; STEPS=40
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/gpu_smoke}
STEPS=${STEPS:-40}
export HF_HUB_OFFLINE=1 WANDB_MODE=offline EDGEJSON_DIR=${EDGEJSON_DIR:-$(cd .. && pwd)/shared/edgejson}
mkdir -p "$OUT"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name(0))"

# 1. training: bf16-mixed (trainer=gpu), the reference recipe's settings, eval.split=none
$PY -m scaling.train model=smol135_gguf data=edgejson_v3 data.prompt.template=plain data.prompt.schema=fields \
    trainer=gpu finetune=full finetune.max_steps="$STEPS" finetune.optim.lr=1e-4 finetune.batch_size=8 \
    eval.split=none logger=csv output_root="$OUT" sweep_name=gpu_smoke run_name=train 2>&1 | tail -n 5
RESULTS="$OUT/runs/gpu_smoke/train/results.json"
WEIGHTS=$($PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['train'].get('reused_from') or '')" "$RESULTS")
[ -n "$WEIGHTS" ] || WEIGHTS=$(ls -d "$OUT"/trained/*/ | head -n 1)

# 2. decoding on CUDA: the continuous engine against the hf reference, same weights and slice
$PY bench/decode_engines.py --weights "$WEIGHTS/model.safetensors" --device cuda --n-per-tier 8 \
    --variants continuous_bf16 hf_bf16 --out "$OUT/decode.json" > /dev/null

# 3. the numbers
$PY - "$RESULTS" "$OUT/decode.json" <<'PYEOF'
import json, sys
import torch
train = json.load(open(sys.argv[1]))
decode = json.load(open(sys.argv[2]))
name = torch.cuda.get_device_name(0)
# dense bf16 peak, TFLOP/s (vendor figures)
peak = next((v for k, v in {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "A10": 125, "L4": 121}.items() if k in name), None)
n = train["params"]["total"]
t = train["train"]
print(f"{name}: train {t['steps']} steps, {t['tokens']} tokens, {t['tokens_per_s']:.0f} tokens/s "
      f"({t['precision']}, peak {t['peak_mem_mb']:.0f} MB)")
if peak:
    print(f"  training MFU (6 N tokens/s / peak): {6 * n * t['tokens_per_s'] / (peak * 1e12):.2%} of {peak} TFLOP/s")
for v, s in decode["variants"].items():
    line = f"  decode {v}: {s['wall_s']:.1f} s, {s['generated_tokens']} tokens, {s['tokens_per_s']:.0f} tokens/s"
    if s.get("ms_per_step"):
        line += f", {s['ms_per_step']:.1f} ms/step at {s['mean_batch_rows']} rows"
    if peak:
        line += f", MFU {2 * n * s['tokens_per_s'] / (peak * 1e12):.3%}"
    print(line + f", JSONExact {s['json_exact']:.3f}")
PYEOF

#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md and docs/scaling.md, as run on a lent H100 (one call
# per stage; see the device notes there). Results land in $OUT (or ./gpu-results).
#   bash benchmarks/h100.sh smoke   # CUDA paths on the tiny shape, then the 7B step benchmark
#   bash benchmarks/h100.sh memory  # training-step memory, 7B and 3B; then the 3B step benchmark
#   bash benchmarks/h100.sh groupkv # the group decoder (issue 7's decode target), 7B, both paths
#   bash benchmarks/h100.sh groupkv3b  # Qwen3-Omni tiny on CUDA; the 3B step, both paths
#   bash benchmarks/h100.sh memory3    # training-step memory with the group decoder in the rollouts
#   bash benchmarks/h100.sh sft        # cold-start SFT step memory and time, 7B and 3B (not run yet)
#   bash benchmarks/h100.sh towers     # the towers' packed attention at the 7B workload; the 7B step with it (not run yet)
#   bash benchmarks/h100.sh trainstep  # the whole trainer step (phases, tokens/s/GPU, checkpoint), 3B VL and 7B (not run yet)
#   bash benchmarks/h100.sh parts      # the parts family at HumanOmni-0.5B's shape, both paths (not run yet)
# The machine's image has torch and transformers of other versions: the pinned transformers and
# peft travel as wheels in .whl/ (pip download, see docs/benchmarks.md) and are installed first.
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
$PY -c "import torch, transformers, peft, accelerate, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
case "${1:-smoke}" in
smoke)
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --check --out "$OUT/grpo_step_tiny_cuda.json" || exit 1
    $PY benchmarks/train_memory.py --shape tiny --device cuda --configs full,full_beta0,full_refcpu,lora \
        --out "$OUT/train_memory_tiny_cuda.json" || exit 1
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing --repeats 2 \
        --check --out "$OUT/grpo_step_7b_h100.json" 2>&1 | tee "$OUT/grpo_step_7b_h100.log"
    ;;
memory)
    $PY benchmarks/train_memory.py --shape 7b --device cuda --configs lora,full_beta0_bf16,full_beta0,full_bf16 \
        --out "$OUT/train_memory_7b_h100.json" 2>&1 | tee "$OUT/train_memory_7b_h100.log"
    $PY benchmarks/train_memory.py --shape 3b --device cuda --configs lora,full,full_bf16 \
        --out "$OUT/train_memory_3b_h100.json" 2>&1 | tee "$OUT/train_memory_3b_h100.log"
    ;;
memory2)  # after the fused AdamW and chunked float32 masters
    $PY benchmarks/train_memory.py --shape 7b --device cuda --configs full_beta0_bf16,lora \
        --out "$OUT/train_memory_7b_h100_fused.json" 2>&1 | tee "$OUT/train_memory_7b_h100_fused.log"
    $PY benchmarks/train_memory.py --shape 3b --device cuda --configs full,full_beta0 \
        --out "$OUT/train_memory_3b_h100_fused.json" 2>&1 | tee "$OUT/train_memory_3b_h100_fused.log"
    ;;
extra)  # 7B exactness in float32; decode ms/step at 8 rows (against 64); the 3B step
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype float32 --paths "" --check \
        --out "$OUT/grpo_step_7b_h100_fp32_check.json" 2>&1 | tail -3
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing --paths group \
        --prompts 1 --repeats 2 --out "$OUT/grpo_step_7b_h100_8rows.json" 2>&1 | grep -E "decode|step s|first"
    $PY benchmarks/grpo_step.py --shape 3b --device cuda --dtype bfloat16 --grad-checkpointing --repeats 1 \
        --check --out "$OUT/grpo_step_3b_h100.json" 2>&1 | tee "$OUT/grpo_step_3b_h100.log"
    ;;
graph)  # the group path with the static-cache decoder replayed as a CUDA graph
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --decode graph --check 2>&1 | tail -2 || exit 1
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing --paths group \
        --decode graph --repeats 2 --check --out "$OUT/grpo_step_7b_h100_graph.json" 2>&1 | tee "$OUT/grpo_step_7b_h100_graph.log"
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing --paths group \
        --decode static --repeats 1 --out "$OUT/grpo_step_7b_h100_static.json" 2>&1 | grep -E "decode|step s"
    ;;
groupkv)  # GroupDecoder: each prompt's KV once per group, the graph captured once per run (in the warm-up
    # step); both paths in one call for the same-run step ratio, then the fp32 exactness check
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --decode graph --check 2>&1 | tail -2 || exit 1
    # Qwen3-Omni (routed experts) on CUDA: the eager group decoder, the exactness check (not timed)
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --family qwen3-omni --decode static --check 2>&1 | tail -2
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing \
        --decode graph --repeats 2 --check --out "$OUT/grpo_step_7b_h100_groupkv.json" 2>&1 | tee "$OUT/grpo_step_7b_h100_groupkv.log"
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype float32 --paths "" --decode graph --check \
        --out "$OUT/grpo_step_7b_h100_fp32_check_groupkv.json" 2>&1 | tail -3
    # the same with cuDNN's TF32 off (the encoders' convolutions; see docs/benchmarks.md)
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype float32 --paths "" --decode graph --check \
        --no-cudnn-tf32 --out "$OUT/grpo_step_7b_h100_fp32_check_notf32.json" 2>&1 | tail -3
    ;;
groupkv3b)  # the Qwen3-Omni tiny CUDA check in full; the 3B shape, both paths, with the group decoder
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --family qwen3-omni --decode static --check \
        --out "$OUT/grpo_step_tiny_qwen3_cuda.json" 2>&1 | tee "$OUT/grpo_step_tiny_qwen3_cuda.log"
    $PY benchmarks/grpo_step.py --shape 3b --device cuda --dtype bfloat16 --grad-checkpointing \
        --decode graph --repeats 2 --check --out "$OUT/grpo_step_3b_h100_groupkv.json" 2>&1 | tee "$OUT/grpo_step_3b_h100_groupkv.log"
    ;;
sft)  # R1-Omni's cold-start step (16 samples, micro-batches of 2, 256-token targets) under each lever
    $PY benchmarks/train_memory.py --shape 7b --device cuda \
        --configs sft_lora,sft_lora_nockpt,sft_full,sft_full_nockpt,sft_zero3_offload \
        --out "$OUT/train_memory_sft_7b.json" 2>&1 | tee "$OUT/train_memory_sft_7b.log"
    $PY benchmarks/train_memory.py --shape 3b --device cuda --configs sft_lora,sft_full,sft_full_nockpt \
        --out "$OUT/train_memory_sft_3b.json" 2>&1 | tee "$OUT/train_memory_sft_3b.log"
    ;;
memory3)  # memory2 again with the group decoder in the trainer's rollouts (its graph and buffers kept)
    $PY benchmarks/train_memory.py --shape 7b --device cuda --configs full_beta0_bf16,lora \
        --out "$OUT/train_memory_7b_h100_groupkv.json" 2>&1 | tee "$OUT/train_memory_7b_h100_groupkv.log"
    $PY benchmarks/train_memory.py --shape 3b --device cuda --configs full,full_beta0 \
        --out "$OUT/train_memory_3b_h100_groupkv.json" 2>&1 | tee "$OUT/train_memory_3b_h100_groupkv.log"
    ;;
towers)  # emorl.models.varlen: the towers' loop of one attention call per window against one per length,
    # then the whole 7B step (both paths, same run) and its fp32 exactness check with the packed towers
    $PY benchmarks/tower_attention.py --shape 7b --device cuda --dtype bfloat16 \
        --out "$OUT/tower_attention_7b_h100.json" 2>&1 | tee "$OUT/tower_attention_7b_h100.log"
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype bfloat16 --grad-checkpointing \
        --decode graph --repeats 2 --check --out "$OUT/grpo_step_7b_h100_towers.json" 2>&1 | tee "$OUT/grpo_step_7b_h100_towers.log"
    $PY benchmarks/grpo_step.py --shape 7b --device cuda --dtype float32 --paths "" --decode graph --check \
        --no-cudnn-tf32 --out "$OUT/grpo_step_7b_h100_fp32_check_towers.json" 2>&1 | tail -3
    ;;
trainstep)  # issue 22: the whole step with verl's token accounting against EasyR1's 1,800 tok/s/GPU
    # (Qwen2.5-VL-3B); step 1 warms up (graph capture), read steps 2-3. A faithful 7B full fine-tune
    # (float32 masters + reference) does not fit one 80 GB card: full_beta0_bf16 is the full one that does.
    $PY benchmarks/train_memory.py --shape 3b --device cuda --family qwen2.5-vl --steps 3 \
        --configs lora,emo_r3_lora,full,emo_r3_full \
        --out "$OUT/train_step_3b_vl_h100.json" 2>&1 | tee "$OUT/train_step_3b_vl_h100.log"
    $PY benchmarks/train_memory.py --shape 7b --device cuda --steps 3 --configs lora,emo_r3_lora,full_beta0_bf16 \
        --out "$OUT/train_step_7b_h100.json" 2>&1 | tee "$OUT/train_step_7b_h100.log"
    ;;
parts)  # R1-Omni's base shape (HumanOmni-0.5B: Qwen2.5-0.5B + SigLIP-base + whisper-large-v3 encoder + BERT
    # gate, 392 + 500 media tokens a prompt): the tiny parts on CUDA with the check, then both paths in
    # one run (the same-run step ratio, target >= 5x), with the growing cache and with the group decoder
    $PY benchmarks/grpo_step.py --shape tiny --device cuda --family parts --decode static --check 2>&1 | tail -2 || exit 1
    $PY benchmarks/grpo_step.py --shape humanomni-0.5b --family parts --device cuda --dtype bfloat16 --grad-checkpointing \
        --repeats 2 --check --out "$OUT/grpo_step_humanomni-0.5b_parts_h100.json" 2>&1 | tee "$OUT/grpo_step_humanomni-0.5b_parts_h100.log"
    $PY benchmarks/grpo_step.py --shape humanomni-0.5b --family parts --device cuda --dtype bfloat16 --grad-checkpointing \
        --decode graph --repeats 2 --check --out "$OUT/grpo_step_humanomni-0.5b_parts_h100_graph.json" 2>&1 | tee "$OUT/grpo_step_humanomni-0.5b_parts_h100_graph.log"
    ;;
*) echo "unknown stage $1 (smoke | memory | memory2 | extra | graph | groupkv | groupkv3b | memory3 | sft | towers | trainstep | parts)"; exit 2 ;;
esac

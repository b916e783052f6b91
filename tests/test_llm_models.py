"""Tiny models, their tokenizer, loading/saving and LoRA adapters — on real tiny models."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamgym_cli.errors import InputError
from dreamgym_cli.llm.models import (
    ADAPTER_CONFIG,
    LoraSettings,
    load_model,
    save_model,
    trainable_parameters,
)
from dreamgym_cli.llm.tiny import TINY_SIZES, build_tiny, parameter_count
from dreamgym_cli.llm.tokenizer import ROLE_MARKERS, SPECIAL_TOKENS, TAG_TOKENS


def word_corpus(n_texts: int = 3000, seed: int = 0) -> list[str]:
    """Varied text (random words, game-like phrases, tags) that fills a few thousand BPE merges."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(4000)]
    rooms = ["kitchen", "cellar", "garden", "attic", "pantry"]
    texts = []
    for i in range(n_texts):
        room, obj = rng.choice(rooms), rng.choice(words)
        texts.append(f"You are in the {room}. There is a {obj} here. <action>take {obj}</action> "
                     + " ".join(rng.choice(words) for _ in range(12)) + f" score {i % 7}")
    return texts


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return word_corpus()


@pytest.fixture(scope="module")
def tiny(corpus):
    return build_tiny("tiny:1m", corpus, seed=0)


def logits_of(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


# ---- tiny models ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec,low,high", [
    ("tiny:1m", 0.8e6, 1.3e6), ("tiny:10m", 8e6, 13e6), ("tiny:30m", 24e6, 36e6),
])
def test_tiny_sizes_have_the_parameter_count_their_name_says(corpus, spec, low, high):
    model, tokenizer = build_tiny(spec, corpus, seed=0)
    assert low <= parameter_count(model) <= high
    assert model.config.vocab_size == len(tokenizer)
    assert len(tokenizer) > TINY_SIZES[spec.split(":")[1]].vocab // 2  # the corpus filled the vocab
    assert model.config.tie_word_embeddings


def test_tiny_build_is_seeded(corpus):
    a, _ = build_tiny("tiny:1m", corpus, seed=1)
    b, _ = build_tiny("tiny:1m", corpus, seed=1)
    c, _ = build_tiny("tiny:1m", corpus, seed=2)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_tiny_round_trips_through_save_and_load_with_the_same_logits(tiny, tmp_path):
    model, tokenizer = tiny
    ids = tokenizer("You are in the kitchen. <think>hm</think>")["input_ids"]
    save_model(model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded, loaded_tok = load_model(tmp_path / "m")
    assert loaded_tok("You are in the kitchen. <think>hm</think>")["input_ids"] == ids
    assert torch.equal(logits_of(model, ids), logits_of(loaded, ids))
    # a tiny model trains all its weights, and keeps doing so after a save/load
    assert len(trainable_parameters(loaded)) == len(list(loaded.parameters()))


def test_unknown_tiny_size_is_an_input_error_with_a_suggestion(corpus):
    with pytest.raises(InputError, match=r"did you mean 'tiny:1m'"):
        load_model("tiny:1n", texts=corpus)
    with pytest.raises(InputError, match="needs|texts"):
        load_model("tiny:1m")


# ---- tokenizer -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_tokenizer_round_trips_any_text(tiny, text):
    _, tokenizer = tiny
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_tags_and_special_tokens_are_single_tokens(tiny):
    _, tokenizer = tiny
    for token in (*TAG_TOKENS, *SPECIAL_TOKENS):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, token
        assert tokenizer.convert_ids_to_tokens(ids) == [token]
    ids = tokenizer("go<think>why</think><action>open door</action>")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert {"<think>", "</think>", "<action>", "</action>"} <= set(tokens)
    # tags survive skip_special_tokens (parsers read them); role markers and eos do not
    text = "<|user|><think>a</think></s>"
    decoded = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    assert decoded == "<think>a</think>"


def test_chat_template_renders_roles_and_generation_prompt(tiny):
    _, tokenizer = tiny
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s><|system|>\nbe brief</s>\n<|user|>\nhi</s>\n<|assistant|>\n"
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids) == text
    assert set(ROLE_MARKERS[1:]) <= set(tokenizer.convert_ids_to_tokens(ids))
    with pytest.raises(Exception, match="unknown chat role"):
        tokenizer.apply_chat_template([{"role": "robot", "content": "x"}], tokenize=False)


# ---- local dirs, LoRA ----------------------------------------------------------------------


@pytest.fixture
def pretrained_dir(tiny, tmp_path):
    """A tiny model saved as a plain HF dir (no dreamgym metadata): a stand-in pretrained base."""
    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_plain_hf_dir_loads_frozen_unless_full(pretrained_dir):
    frozen, _ = load_model(pretrained_dir)
    assert trainable_parameters(frozen) == []
    full, _ = load_model(pretrained_dir, full=True)
    assert len(trainable_parameters(full)) == len(list(full.parameters()))


def test_bad_model_sources_are_input_errors(pretrained_dir, tmp_path):
    with pytest.raises(InputError, match="not a model"):
        load_model(tmp_path / "missing")
    with pytest.raises(InputError, match="neither config.json"):
        load_model(tmp_path)
    with pytest.raises(InputError, match="not both"):
        load_model(pretrained_dir, lora=LoraSettings(), full=True)
    with pytest.raises(InputError, match="unknown dtype"):
        load_model(pretrained_dir, dtype="float8")
    with pytest.raises(InputError, match="target_modules|LoRA"):
        load_model(pretrained_dir, lora=LoraSettings(target_modules=("no_such_proj",)))


def _train_one_step(model, tokenizer) -> None:
    ids = torch.tensor([tokenizer("You are in the cellar. <action>go up</action>")["input_ids"]])
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    with torch.no_grad():
        for p in trainable_parameters(model):
            p -= 0.5 * p.grad.sign()  # a big step: the adapter's effect must show in the logits
    model.eval()


def test_lora_trains_only_adapter_params_and_round_trips(pretrained_dir, tmp_path):
    settings_ = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
    model, tokenizer = load_model(pretrained_dir, lora=settings_)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    ids = tokenizer("There is a key here.")["input_ids"]
    before = logits_of(model, ids)
    _train_one_step(model, tokenizer)
    after = logits_of(model, ids)
    assert not torch.allclose(before, after)
    for name, p in model.named_parameters():
        if name in base_before:
            assert torch.equal(p, base_before[name]), name

    save_model(model, tokenizer, tmp_path / "adapter")
    assert (tmp_path / "adapter" / ADAPTER_CONFIG).is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # an adapter, not a copy
    reloaded, _ = load_model(tmp_path / "adapter")
    assert torch.allclose(logits_of(reloaded, ids), after, atol=1e-5)
    assert all("lora_" in n for n, p in reloaded.named_parameters() if p.requires_grad)
    with pytest.raises(InputError, match="already a LoRA adapter"):
        load_model(tmp_path / "adapter", lora=settings_)
    merged, _ = load_model(tmp_path / "adapter", full=True)  # fold in, then train everything
    assert torch.allclose(logits_of(merged, ids), after, atol=1e-4)
    assert len(trainable_parameters(merged)) == len(list(merged.parameters()))


def test_lora_on_a_tiny_spec_saves_the_base_beside_the_adapter(corpus, tmp_path):
    model, tokenizer = load_model("tiny:1m", texts=corpus, lora=LoraSettings(r=2, dropout=0.0))
    _train_one_step(model, tokenizer)
    ids = tokenizer("a garden")["input_ids"]
    save_model(model, tokenizer, tmp_path / "em")
    config = json.loads((tmp_path / "em" / ADAPTER_CONFIG).read_text())
    assert config["base_model_name_or_path"] == "base"
    assert (tmp_path / "em" / "base" / "model.safetensors").is_file()
    reloaded, _ = load_model(tmp_path / "em")
    assert torch.allclose(logits_of(reloaded, ids), logits_of(model, ids), atol=1e-5)

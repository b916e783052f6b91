"""Loading, adapting and saving the models: `tiny:<size>`, local HF model dirs, PEFT adapter dirs.

`load_model` returns `(model, tokenizer)` in eval mode with `requires_grad` set to what may be
trained (a trainer optimises exactly the parameters that require grad):

| source                      | neither          | `lora=...`                 | `full=True`    |
|-----------------------------|------------------|----------------------------|----------------|
| `tiny:<size>` (needs texts) | all weights      | new adapter, base frozen   | all weights    |
| HF dir saved by `save_model`| as it was saved  | new adapter, base frozen   | all weights    |
| any other HF dir            | frozen           | new adapter, base frozen   | all weights    |
| adapter dir                 | adapter (resumes)| error: it already has one  | merged, all    |

Weights load from safetensors only, from local files only, without remote code.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from dreamgym_cli.config import option
from dreamgym_cli.errors import InputError
from dreamgym_cli.llm.tiny import build_tiny, is_tiny_spec

INFO_FILE = "dreamgym_model.json"  # how a saved model was made and how it trains
ADAPTER_CONFIG = "adapter_config.json"
BASE_SUBDIR = "base"  # where save_model puts a base that exists nowhere else (tiny + LoRA)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter for a pretrained base (peft)."""

    r: int = option(16, help="LoRA rank")
    alpha: int = option(32, help="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = option(0.05, help="dropout on the adapter input during training")
    target_modules: tuple[str, ...] = option(
        ("all-linear",), help="module names to adapt, or 'all-linear' (every linear but lm_head)"
    )

    def __post_init__(self):
        if self.r < 1:
            raise InputError(f"LoRA rank must be >= 1, got {self.r}", field="lora_r")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"LoRA dropout must be in [0, 1), got {self.dropout}",
                             field="lora_dropout")
        if not self.target_modules:
            raise InputError("LoRA needs at least one target module", field="target_modules")


def load_model(
    spec_or_dir: str | Path,
    *,
    texts=None,
    lora: LoraSettings | None = None,
    full: bool = False,
    dtype: str | torch.dtype = "float32",
    seed: int = 0,
) -> tuple[Any, Any]:
    """(model, tokenizer) from `tiny:<size>` (built from `texts`), an HF dir or an adapter dir."""
    if lora is not None and full:
        raise InputError("choose LoRA or full fine-tuning, not both", field="full")
    torch_dtype = _dtype(dtype)
    spec = str(spec_or_dir)
    if is_tiny_spec(spec):
        if texts is None:
            raise InputError(f"{spec} trains its tokenizer on the store's texts; none were given")
        model, tokenizer = build_tiny(spec, texts, seed)
        model = model.to(torch_dtype)
        info = {"origin": spec, "train": "full"}
    else:
        path = _model_dir(spec)
        if (path / ADAPTER_CONFIG).is_file():
            return _load_adapter_dir(path, lora=lora, full=full, dtype=torch_dtype)
        model, tokenizer = _load_hf_dir(path, torch_dtype), _load_tokenizer(path)
        info = _read_info(path) or {"origin": str(path.resolve()), "train": "frozen"}
        info["train"] = "full" if full else info.get("train", "frozen")
    if lora is not None:  # a tiny base lives only in memory: keep a copy for save_model
        return _attach_lora(model, lora, info, keep_base_copy=is_tiny_spec(spec)), tokenizer
    _set_trainable(model, info["train"] == "full")
    model._dreamgym_info = info
    return model.eval(), tokenizer


def save_model(model, tokenizer, out_dir: str | Path) -> Path:
    """Write `model` (full weights, or adapter + where its base lives) and `tokenizer` to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(getattr(_unwrap(model), "_dreamgym_info", None) or {"train": "full"})
    pristine_base = info.pop("pristine_base", None)
    if _is_peft(model):
        model.save_pretrained(out, safe_serialization=True)
        info["base"] = _save_or_locate_base(model, pristine_base, tokenizer, out)
        _rewrite_adapter_base(out, info["base"])
    else:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# ---- loading -------------------------------------------------------------------------------


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype '{dtype}'; expected one of {', '.join(DTYPES)}",
                         field="dtype")
    return DTYPES[dtype]


def _model_dir(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise InputError(
            "not a model: expected tiny:<size> or a local Hugging Face model dir "
            "(download a hub model first, e.g. `hf download ORG/NAME --local-dir DIR`)",
            file=path,
        )
    if not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
        raise InputError("model dir has neither config.json nor adapter_config.json", file=path)
    return path


def _load_hf_dir(path: Path, dtype: torch.dtype) -> PreTrainedModel:
    if not any(path.glob("*.safetensors")):
        raise InputError("no *.safetensors weights in the model dir (pickled weights are "
                         "not loaded; convert them to safetensors)", file=path)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, use_safetensors=True,
            dtype=dtype,
        )
    except (ValueError, OSError, KeyError) as e:
        raise InputError(f"cannot load the model: {str(e).splitlines()[0]}", file=path) from None


def _load_tokenizer(path: Path):
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError) as e:
        raise InputError(f"cannot load the tokenizer: {str(e).splitlines()[0]}",
                         file=path) from None


def _read_info(path: Path) -> dict | None:
    file = path / INFO_FILE
    if not file.is_file():
        return None
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg}", file=file, line=e.lineno) from None
    if not isinstance(info, dict):
        raise InputError("expected a JSON object", file=file)
    return info


def _load_adapter_dir(path: Path, *, lora, full: bool, dtype: torch.dtype):
    from peft import PeftModel

    if lora is not None:
        raise InputError("this model dir is already a LoRA adapter: continue training it "
                         "without new LoRA settings, or pass full=True to merge it", file=path)
    info = _read_info(path) or {}
    base_dir = _adapter_base_dir(path, info)
    base = _load_hf_dir(base_dir, dtype)
    tokenizer = _load_tokenizer(path if (path / "tokenizer_config.json").is_file() else base_dir)
    model = PeftModel.from_pretrained(base, path, is_trainable=True)
    info = {**info, "origin": info.get("origin", str(base_dir)), "train": "lora"}
    if full:  # fold the adapter into the weights and train them all
        model = model.merge_and_unload()
        info = {"origin": info["origin"], "train": "full"}
        _set_trainable(model, True)
    _unwrap(model)._dreamgym_info = info
    return model.eval(), tokenizer


def _adapter_base_dir(path: Path, info: dict) -> Path:
    base = info.get("base")
    field = "base"
    if base is None:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        base, field = config.get("base_model_name_or_path"), "base_model_name_or_path"
    base_dir = path / base if base and not Path(base).is_absolute() else Path(base or "")
    if not base or not (base_dir / "config.json").is_file():
        raise InputError(f"the adapter's base model '{base}' is not a local model dir",
                         file=path / ADAPTER_CONFIG, field=field)
    return base_dir


# ---- adapting ------------------------------------------------------------------------------


def _attach_lora(model: PreTrainedModel, lora: LoraSettings, info: dict, *, keep_base_copy: bool):
    from peft import LoraConfig, get_peft_model

    targets = list(lora.target_modules)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
        target_modules="all-linear" if targets == ["all-linear"] else targets,
    )
    pristine = copy.deepcopy(model) if keep_base_copy else None  # written by save_model
    _set_trainable(model, False)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:
        raise InputError(f"cannot attach LoRA: {str(e).splitlines()[0]}",
                         field="target_modules") from None
    info = {**info, "train": "lora", "lora": asdict(lora), "pristine_base": pristine}
    _unwrap(peft_model)._dreamgym_info = info
    return peft_model.eval()


def _set_trainable(model: torch.nn.Module, trainable: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(trainable)


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _unwrap(model):
    """The transformers model under a PeftModel (where our info lives), or the model itself."""
    return model.get_base_model() if _is_peft(model) else model


# ---- saving --------------------------------------------------------------------------------


def _save_or_locate_base(model, pristine_base, tokenizer, out: Path) -> str:
    """Where the adapter's base lives: its own dir, or `out/base` when it exists only here."""
    if pristine_base is not None:
        pristine_base.save_pretrained(out / BASE_SUBDIR, safe_serialization=True)
        tokenizer.save_pretrained(out / BASE_SUBDIR)
        return BASE_SUBDIR
    name = _unwrap(model).config._name_or_path
    if name and (Path(name) / "config.json").is_file():
        return str(Path(name).resolve())
    raise InputError(f"cannot save the adapter: its base model '{name}' is not a local dir")


def _rewrite_adapter_base(out: Path, base: str) -> None:
    file = out / ADAPTER_CONFIG
    config = json.loads(file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

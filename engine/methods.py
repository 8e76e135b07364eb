"""Fine-tuning methods: which parameters train.

A small registry, `METHODS[name](model, cfg, task) -> model`, grouped as the field does:
selective (full, last_layer, freeze_layers, bitfit), additive (prompt/prefix tuning, IA3) and
reparameterisation (LoRA, rsLoRA, DoRA, QLoRA).
"""

from __future__ import annotations

import re
from typing import Callable

from tuitune.config import RunConfig
from tuitune.errors import TuituneError

METHODS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        METHODS[name] = fn
        return fn
    return deco


def apply_method(model, cfg: RunConfig, task):
    try:
        fn = METHODS[cfg.method.name]
    except KeyError:
        raise TuituneError(
            f"method {cfg.method.name!r} is not available for this build: choose one of {', '.join(METHODS)}"
        ) from None
    return fn(model, cfg, task)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters, counting shared (tied) tensors once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        if hasattr(p, "quant_state") or p.__class__.__name__ == "Params4bit":
            n *= 2  # 4-bit packs two values per byte
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def _freeze_all(model) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def _head_names(model, task) -> list[str]:
    names = {n.split(".")[0] for n, _ in model.named_modules() if n}
    heads = [h for h in task.head_modules if h in names]
    # BERT-like classifiers keep the pooler inside the base model
    for n, _ in model.named_modules():
        if n.endswith(".pooler") and "pooler" in task.head_modules:
            heads.append(n)
    if not heads:
        raise TuituneError(f"cannot find a task head in {type(model).__name__}: use method full or lora")
    return heads


def _layer_index(name: str) -> int | None:
    m = re.search(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


# -- selective ------------------------------------------------------------------------------------

@register("full")
def full(model, cfg, task):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


@register("last_layer")
def last_layer(model, cfg, task):
    """Freeze the whole base model; train only the task head (fast, less accurate)."""
    _freeze_all(model)
    for head in _head_names(model, task):
        for p in model.get_submodule(head).parameters():
            p.requires_grad_(True)
    return model


@register("freeze_layers")
def freeze_layers(model, cfg, task):
    """Freeze the embeddings and the first N transformer layers; train the rest."""
    n = cfg.method.freeze_layers
    layers = {i for i in (_layer_index(name) for name, _ in model.named_parameters()) if i is not None}
    if layers and n > max(layers) + 1:
        raise TuituneError(f"method.freeze_layers is {n} but the model has {max(layers) + 1} layers")
    for name, p in model.named_parameters():
        i = _layer_index(name)
        frozen = "embed" in name or (i is not None and i < n)
        p.requires_grad_(not frozen)
    return model


@register("bitfit")
def bitfit(model, cfg, task):
    """Train only the bias terms (and the task head, which is new)."""
    _freeze_all(model)
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            p.requires_grad_(True)
    if task.name == "classification":
        for head in _head_names(model, task):
            for p in model.get_submodule(head).parameters():
                p.requires_grad_(True)
    return model


# -- reparameterisation -----------------------------------------------------------------------

def default_target_modules(model) -> list[str]:
    """peft's own per-architecture defaults, else every attention projection we recognise."""
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping
    except ImportError:  # pragma: no cover - older peft
        mapping = {}
    mt = getattr(model.config, "model_type", None)
    if mt in mapping:
        return list(mapping[mt])
    leaf = {n.split(".")[-1] for n, _ in model.named_modules()}
    for group in (["q_proj", "v_proj"], ["query", "value"], ["q_lin", "v_lin"], ["c_attn"]):
        if all(g in leaf for g in group):
            return group
    raise TuituneError(
        f"no default LoRA target modules for model type {mt!r}: set method.target_modules (e.g. [q_proj, v_proj])"
    )


def _modules_to_save(model, cfg, task) -> list[str] | None:
    if cfg.method.modules_to_save is not None:
        return cfg.method.modules_to_save or None
    if task.name != "classification":
        return None
    # The new head must train; a sentence-embedding BERT's pooler was never trained either.
    leaf = {n.split(".")[-1] for n, _ in model.named_modules()}
    return [h for h in ("classifier", "pooler", "score", "pre_classifier") if h in leaf] or None


def lora_config(model, cfg: RunConfig, task):
    from peft import LoraConfig

    m = cfg.method
    targets = m.target_modules or default_target_modules(model)
    leaf = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in leaf and not any(n.endswith(t) for n, _ in model.named_modules())]
    if missing:
        raise TuituneError(
            f"LoRA target module(s) {', '.join(missing)} not in {type(model).__name__}: "
            f"pick from e.g. {', '.join(sorted(x for x in leaf if x)[:12])}"
        )
    return LoraConfig(
        r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, target_modules=targets,
        modules_to_save=_modules_to_save(model, cfg, task), use_rslora=m.use_rslora, use_dora=m.use_dora,
        task_type=task.peft_task_type,
    )


@register("lora")
def lora(model, cfg, task):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, cfg, task))

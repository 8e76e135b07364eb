"""Fine-tuning methods: which parameters train.

A small registry, `METHODS[name](model, cfg, task) -> model`, grouped as the field does:
selective (full, last_layer, freeze_layers, bitfit), additive (prompt/prefix tuning, IA3) and
reparameterisation (LoRA, rsLoRA, DoRA, QLoRA).
"""

from __future__ import annotations

import re
from typing import Callable

from tuitune import tasks as registry
from tuitune.config import RunConfig
from tuitune.errors import TuituneError

METHODS: dict[str, Callable] = {}


def register(name: str):
    """Attach a method function to its name in the registry (tuitune/tasks.py)."""
    registry.METHODS[name]  # KeyError here: add the spec to tuitune/tasks.py first

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
    if task.spec.new_head:
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
    if not task.spec.new_head:
        return None
    # The new head must train; a sentence-embedding BERT's pooler was never trained either.
    heads = {}
    for name, module in model.named_modules():
        leaf = name.split(".")[-1]
        if leaf in task.spec.head_modules:
            # on a quantized base a head that was quantized anyway cannot train: leave it out
            floating = all(p.is_floating_point() for p in module.parameters())
            heads[leaf] = heads.get(leaf, True) and floating
    return [h for h, ok in heads.items() if ok] or None


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
    """LoRA (rsLoRA / DoRA via method.use_rslora / use_dora); on an 8-bit or 4-bit base, k-bit prep first."""
    from peft import get_peft_model

    if _quantized(model):
        model = _prepare_quantized(model, cfg)
    return get_peft_model(model, lora_config(model, cfg, task))


def _quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "is_quantized", False))


def _prepare_quantized(model, cfg):
    """Freeze the quantized base, upcast norms, enable input grads (peft's k-bit recipe)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.training.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.training.gradient_checkpointing else None,
    )


@register("qlora")
def qlora(model, cfg, task):
    """QLoRA: a 4-bit base (frozen, quantized at load time) plus LoRA adapters in full precision."""
    if not _quantized(model):
        raise TuituneError("method qlora needs a 4-bit base model: set quantization.load_in=4bit")
    return lora(model, cfg, task)


# -- additive -------------------------------------------------------------------------------------

def _check_prompt_learning(model, task, method: str) -> None:
    """A clear error where peft's prompt learning cannot work with this model and task."""
    mt = getattr(model.config, "model_type", "?")
    if method == "prefix_tuning" and task.spec.new_head and mt in registry.ENCODER_TYPES:
        raise TuituneError(
            f"prefix_tuning is not supported for {mt} classifiers (transformers 5 changed the cache argument "
            "peft relies on): use prompt_tuning, ia3 or lora, or prefix_tuning with task mlm"
        )
    if method == "prefix_tuning" and mt == "distilbert":
        raise TuituneError("prefix_tuning is not supported for distilbert (no key/value cache): use prompt_tuning or lora")


@register("prompt_tuning")
def prompt_tuning(model, cfg, task):
    """Soft prompts: `num_virtual_tokens` trainable embeddings prepended to every input."""
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    m = cfg.method
    _check_prompt_learning(model, task, "prompt_tuning")
    kw = {}
    if m.prompt_tuning_init == "text":
        from tuitune.engine import models

        kw = dict(prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=m.prompt_tuning_init_text,
                  tokenizer_name_or_path=models.resolve(cfg.model.name_or_path))
    pc = PromptTuningConfig(task_type=task.spec.prompt_task_type,
                            num_virtual_tokens=m.num_virtual_tokens, **kw)
    return get_peft_model(model, pc)


@register("prefix_tuning")
def prefix_tuning(model, cfg, task):
    """Trainable key/value prefixes in every attention layer (`num_virtual_tokens` long)."""
    from peft import PrefixTuningConfig, get_peft_model

    _check_prompt_learning(model, task, "prefix_tuning")
    pc = PrefixTuningConfig(task_type=task.spec.prompt_task_type,
                            num_virtual_tokens=cfg.method.num_virtual_tokens)
    try:
        return get_peft_model(model, pc)
    except (ValueError, TypeError, AttributeError) as err:
        raise TuituneError(f"prefix_tuning is not supported for {type(model).__name__} ({str(err).splitlines()[0][:120]}): "
                           "use prompt_tuning, ia3 or lora") from None


def ia3_modules(model, cfg) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules): the user's, else peft's per-architecture defaults."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as ff_map,
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as target_map,
    )

    mt = getattr(model.config, "model_type", None)
    targets = cfg.method.target_modules or target_map.get(mt)
    if not targets:
        raise TuituneError(f"no default IA3 modules for model type {mt!r}: set method.target_modules "
                           "(attention key/value and the feed-forward output, e.g. [k_proj, v_proj, down_proj])")
    ff_default = ff_map.get(mt) or []
    ff = [t for t in targets if t in ff_default or any(t.endswith(f) for f in ff_default)]
    return list(targets), ff


@register("ia3")
def ia3(model, cfg, task):
    """IA3: learned vectors that rescale keys, values and feed-forward activations."""
    from peft import IA3Config, get_peft_model

    if _quantized(model):
        model = _prepare_quantized(model, cfg)
    targets, ff = ia3_modules(model, cfg)
    pc = IA3Config(target_modules=targets, feedforward_modules=ff,
                   modules_to_save=_modules_to_save(model, cfg, task), task_type=task.peft_task_type)
    return get_peft_model(model, pc)

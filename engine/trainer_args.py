"""Hugging Face TrainingArguments from a run config: one place that maps our fields onto theirs.

Its own module so the task classes (which build Trainers) and the runner (which drives them) both
import it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuitune.config import RunConfig
from tuitune.errors import TuituneError


def mixed_precision(cfg: RunConfig) -> dict[str, bool]:
    import torch

    mp = cfg.training.mixed_precision
    cuda = torch.cuda.is_available() and not cfg.training.use_cpu
    if mp == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            mp = "bf16"
        elif cuda:
            mp = "fp16"
        else:
            mp = "no"
    if mp == "fp16" and not cuda:
        raise TuituneError("training.mixed_precision fp16 needs a CUDA GPU: use auto, bf16 or no")
    return {"bf16": mp == "bf16", "fp16": mp == "fp16"}


def _cuda(cfg: RunConfig) -> bool:
    import torch

    return torch.cuda.is_available() and not cfg.training.use_cpu


def training_arguments(cfg: RunConfig, output_dir: Path, *, args_class=None, **extra: Any):
    """TrainingArguments (or TRL's subclass `args_class`) from the config. The metric Trainer
    optimises is the config's main metric, the same one the runner records."""
    from transformers import TrainingArguments

    t = cfg.training
    per_epoch = t.eval_steps is None
    best_metric = cfg.spec.trainer_metric(cfg.main_metric)
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay, lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps, optim=t.optim, max_grad_norm=t.max_grad_norm,
        seed=t.seed, data_seed=t.seed,
        logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy="epoch" if per_epoch else "steps", eval_steps=t.eval_steps,
        save_strategy="epoch" if per_epoch and not t.save_steps else "steps",
        save_steps=t.save_steps or t.eval_steps or 500, save_total_limit=t.save_total_limit,
        load_best_model_at_end=t.early_stopping_patience is not None,
        metric_for_best_model=best_metric, greater_is_better=cfg.greater_is_better,
        report_to=list(t.report_to) or "none", disable_tqdm=True, use_cpu=t.use_cpu,
        logging_nan_inf_filter=False,  # a NaN loss must reach the history and the watchdog, not be averaged away
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=_cuda(cfg),
        **mixed_precision(cfg),
    )
    if t.gradient_checkpointing:
        kw["gradient_checkpointing"] = True
    if t.fsdp:
        kw["fsdp"] = True
        kw["fsdp_config"] = dict(t.fsdp_config) or None
    kw.update(extra)
    return (args_class or TrainingArguments)(**kw)


def trainer_callbacks(cfg: RunConfig, *first) -> list:
    """`first` (the history callback), then early stopping when the config asks for it."""
    from transformers import EarlyStoppingCallback

    t = cfg.training
    callbacks = list(first)
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
    return callbacks

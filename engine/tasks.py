"""Tasks: what the model learns, from which columns, judged by which metrics.

A small registry: `TASKS[name]` is a `Task` subclass. Each task knows how to load its model
class, prepare data, collate batches, compute metrics, and build its Trainer. Adding one
(sft, dpo) means adding a class here, not branches elsewhere.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from tuitune.engine import data as data_mod
from tuitune.config import RunConfig
from tuitune.errors import TuituneError

TASKS: dict[str, type["Task"]] = {}


def register(name: str) -> Callable[[type["Task"]], type["Task"]]:
    def deco(cls: type["Task"]) -> type["Task"]:
        cls.name = name
        TASKS[name] = cls
        return cls
    return deco


def get_task(cfg: RunConfig) -> "Task":
    try:
        return TASKS[cfg.task](cfg)
    except KeyError:
        raise TuituneError(f"task {cfg.task!r} is not available: choose one of {', '.join(TASKS)}") from None


_TRAINERS: dict[type, type] = {}


def trains_after_evaluate(base: type) -> type:
    """`base` (a Trainer class) whose `train()` still wraps the model for DDP after an `evaluate()`.

    The runner's baseline evaluation prepares the bare model with accelerate in evaluation mode and
    marks it prepared; `train()` then skips the DDP wrap and every process trains its own copy."""
    if base not in _TRAINERS:
        class TrainsAfterEvaluate(base):
            def train(self, *args, **kwargs):
                if self.model_wrapped is self.model and getattr(self.model, "_is_accelerate_prepared", False):
                    self.model._is_accelerate_prepared = False
                    self.accelerator._models = [m for m in self.accelerator._models if m is not self.model]
                return super().train(*args, **kwargs)

        TrainsAfterEvaluate.__name__ = TrainsAfterEvaluate.__qualname__ = base.__name__
        _TRAINERS[base] = TrainsAfterEvaluate
    return _TRAINERS[base]


class TokenCounter:
    """Wraps a collator and counts the real (non-padding) tokens it hands out, for tokens/s."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0
        self.samples = 0

    def __call__(self, features):
        batch = self.collator(features)
        mask = batch.get("attention_mask") if hasattr(batch, "get") else None
        if mask is not None:
            self.tokens += int(mask.sum())
        self.samples += len(features)
        return batch


class Task:
    name = "base"
    main_metric = "loss"
    peft_task_type: Optional[str] = None
    head_modules: tuple[str, ...] = ()

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.label_names: list[str] = []

    # -- data ---------------------------------------------------------------------------------
    def columns(self) -> list[tuple[str, Optional[str]]]:
        return [("text", self.cfg.data.text_column)]

    def prepare(self, tokenizer):
        """Load, check columns, split, tokenize. Returns a DatasetDict ready for the Trainer."""
        raw = data_mod.load_raw(self.cfg.data)
        first = raw[self.cfg.data.train_split] if self.cfg.data.train_split in raw else next(iter(raw.values()))
        data_mod.require_columns(first, self.columns())
        ds = data_mod.splits(raw, self.cfg.data, self.cfg.training.seed)
        return self.tokenize(ds, tokenizer)

    def tokenize(self, ds, tokenizer):
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def model_class(self):
        raise NotImplementedError

    def load_model(self, path: str):
        from transformers import set_seed

        from tuitune.engine import models

        # A new head (and later LoRA's A matrices) draws random weights: seed first, so a run is
        # reproducible and every DDP process starts from the same weights.
        set_seed(self.cfg.training.seed)
        return models.load_model(self.cfg, path, self.model_class(), **self.model_kwargs())

    def trainer_metric(self) -> str:
        """The metric name Trainer sees (for early stopping / best model): one compute_metrics gives."""
        m = self.cfg.main_metric
        return "loss" if m in ("loss", "perplexity") else m

    def build_trainer(self, run, callback):
        from transformers import EarlyStoppingCallback, Trainer

        from tuitune.engine.runner import training_arguments

        t = self.cfg.training
        callbacks = [callback]
        if t.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
        trainer = trains_after_evaluate(Trainer)(
            model=run.model, args=training_arguments(self.cfg, self, run.run_dir / "checkpoints"),
            train_dataset=run.dataset["train"], eval_dataset=run.dataset["validation"],
            data_collator=run.counter, processing_class=run.tokenizer,
            compute_metrics=self.compute_metrics(), callbacks=callbacks,
        )
        # These heads' losses are plain batch means that ignore `num_items_in_batch`; Trainer would
        # still multiply them by the number of processes (DDP: doubled loss and gradients).
        trainer.model_accepts_loss_kwargs = False
        return trainer

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)

    def compute_metrics(self) -> Optional[Callable]:
        return None

    def postprocess_eval(self, metrics: dict[str, float]) -> dict[str, float]:
        return metrics

    def meta(self) -> dict[str, Any]:
        """What predict needs to know about the trained model (saved next to it)."""
        return {"task": self.name, "label_names": self.label_names}


def _text_column_clean(ds, column: str):
    return ds.filter(lambda b: [isinstance(t, str) and bool(t.strip()) for t in b[column]], batched=True)


@register("classification")
class Classification(Task):
    main_metric = "accuracy"
    peft_task_type = "SEQ_CLS"
    head_modules = ("classifier", "pooler", "score", "pre_classifier")

    def columns(self):
        d = self.cfg.data
        return [("text", d.text_column), ("text_pair", d.text_pair_column), ("label", d.label_column)]

    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def tokenize(self, ds, tokenizer):
        d = self.cfg.data
        self.label_names, ds = data_mod.label_names(ds, d.label_column)
        ds = _text_column_clean(ds, d.text_column)
        if d.text_pair_column:
            ds = _text_column_clean(ds, d.text_pair_column)

        def enc(batch):
            pair = batch[d.text_pair_column] if d.text_pair_column else None
            out = tokenizer(batch[d.text_column], pair, truncation=True, max_length=d.max_length)
            out["labels"] = batch[d.label_column]
            return out

        cols = ds["train"].column_names
        ds = ds.map(enc, batched=True, remove_columns=cols, num_proc=data_mod.num_proc())
        return ds

    def model_kwargs(self):
        n = len(self.label_names)
        return {"num_labels": n, "id2label": dict(enumerate(self.label_names)),
                "label2id": {name: i for i, name in enumerate(self.label_names)}}

    def meta(self):
        return dict(super().meta(), text_pair=bool(self.cfg.data.text_pair_column))

    def compute_metrics(self):
        n = len(self.label_names)

        def metrics(p):
            logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
            pred = np.asarray(logits).argmax(-1)
            ref = np.asarray(p.label_ids)
            return {"accuracy": float((pred == ref).mean()), "f1": macro_f1(pred, ref, n)}

        return metrics


def macro_f1(pred: np.ndarray, ref: np.ndarray, n: int) -> float:
    """Macro-averaged F1 over the classes that appear in the references or predictions."""
    scores = []
    for c in range(n):
        tp = int(((pred == c) & (ref == c)).sum())
        fp = int(((pred == c) & (ref != c)).sum())
        fn = int(((pred != c) & (ref == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


@register("mlm")
class MaskedLM(Task):
    main_metric = "perplexity"
    peft_task_type = None  # peft has no masked-LM task type; task_type=None works for LoRA/IA3
    head_modules = ("cls", "lm_head", "vocab_projector", "vocab_transform", "vocab_layer_norm")

    def model_class(self):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def tokenize(self, ds, tokenizer):
        d = self.cfg.data
        if tokenizer.mask_token is None:
            raise TuituneError(f"model {self.cfg.model.name_or_path} has no [MASK] token: masked LM needs a BERT-like model")
        ds = _text_column_clean(ds, d.text_column)

        def enc(batch):
            return tokenizer(batch[d.text_column], truncation=True, max_length=d.max_length,
                             return_special_tokens_mask=True)

        return ds.map(enc, batched=True, remove_columns=ds["train"].column_names, num_proc=data_mod.num_proc())

    def collator(self, tokenizer):
        from transformers import DataCollatorForLanguageModeling

        base = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=self.cfg.data.mlm_probability,
                                               pad_to_multiple_of=8)
        n = self.num_virtual_tokens()
        return VirtualTokenLabels(base, n) if n else base

    def num_virtual_tokens(self) -> int:
        """Soft prompts make the logits longer than the labels: predict and labels shift by this much."""
        return self.cfg.method.num_virtual_tokens if self.cfg.method.name == "prompt_tuning" else 0

    def meta(self):
        return dict(super().meta(), num_virtual_tokens=self.num_virtual_tokens())

    def postprocess_eval(self, metrics):
        for key in list(metrics):
            if key.endswith("_loss"):
                prefix = key[: -len("loss")]
                try:
                    metrics[prefix + "perplexity"] = math.exp(metrics[key])
                except OverflowError:
                    metrics[prefix + "perplexity"] = float("inf")
        return metrics


class VirtualTokenLabels:
    """Prepends `n` ignored (-100) labels to each row: a prompt-tuned masked LM's logits include the
    virtual tokens in front of the text, and its loss compares logits and labels position by position."""

    def __init__(self, collator, n: int):
        self.collator, self.n = collator, n

    def __call__(self, features):
        import torch

        batch = self.collator(features)
        labels = batch["labels"]
        pad = torch.full((labels.shape[0], self.n), -100, dtype=labels.dtype)
        batch["labels"] = torch.cat([pad, labels], dim=1)
        return batch


# -- causal LMs: supervised fine-tuning and preference tuning (TRL) --------------------------------

@register("sft")
class SFT(Task):
    """Supervised fine-tuning of a causal LM with TRL's SFTTrainer.

    Data is either chat `messages` (rendered with the model's chat template) or prompt/completion
    pairs. With `data.completion_only_loss` the loss covers only the answer: a conversation is split
    into its history (prompt) and its last assistant turn (completion).
    """

    main_metric = "loss"
    peft_task_type = "CAUSAL_LM"
    head_modules = ("lm_head",)

    def columns(self):
        d = self.cfg.data
        if d.messages_column:
            return [("messages", d.messages_column)]
        return [("prompt", d.prompt_column), ("completion", d.completion_column)]

    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def prepare(self, tokenizer):
        raw = data_mod.load_raw(self.cfg.data)
        first = raw[self.cfg.data.train_split] if self.cfg.data.train_split in raw else next(iter(raw.values()))
        self._infer_columns(first)
        data_mod.require_columns(first, self.columns())
        ds = data_mod.splits(raw, self.cfg.data, self.cfg.training.seed)
        self._check_chat_template(tokenizer, ds["train"])
        return self.format(ds)

    def _infer_columns(self, first) -> None:
        """A dataset with a `messages` column and no prompt/completion is chat data."""
        d = self.cfg.data
        cols = first.column_names
        if not d.messages_column and "messages" in cols and d.prompt_column not in cols:
            d.messages_column = "messages"

    def _conversational(self, ds) -> bool:
        d = self.cfg.data
        col = d.messages_column or d.prompt_column
        sample = ds[0][col] if len(ds) else None
        return isinstance(sample, list)

    def _check_chat_template(self, tokenizer, train) -> None:
        if self._conversational(train) and not getattr(tokenizer, "chat_template", None):
            raise TuituneError(
                f"model {self.cfg.model.name_or_path} has no chat template but the data is chat messages: "
                "use a chat/instruct model, or plain-text prompt/completion columns"
            )

    def format(self, ds):
        """Rename the user's columns to TRL's (messages | prompt, completion); drop the rest."""
        d = self.cfg.data
        if d.messages_column:
            def split_last(b):
                prompts, completions = [], []
                for conv in b[d.messages_column]:
                    if not conv or conv[-1].get("role") != "assistant":
                        raise TuituneError("each conversation must end with an assistant message "
                                           "(or set data.completion_only_loss=false)")
                    prompts.append(conv[:-1])
                    completions.append(conv[-1:])
                return {"prompt": prompts, "completion": completions}

            if d.completion_only_loss:
                return ds.map(split_last, batched=True, remove_columns=ds["train"].column_names)
            keep = {d.messages_column: "messages"}
        else:
            keep = {d.prompt_column: "prompt", d.completion_column: "completion"}
        return self._select(ds, keep)

    @staticmethod
    def _select(ds, keep: dict[str, str]):
        drop = [c for c in ds["train"].column_names if c not in keep]
        ds = ds.remove_columns(drop)
        renames = {a: b for a, b in keep.items() if a != b}
        return ds.rename_columns(renames) if renames else ds

    def collator(self, tokenizer):
        return None  # TRL's trainers bring their own; build_trainer wraps it in the token counter

    def trainer_args(self, run, args_class, **extra):
        from tuitune.engine.runner import training_arguments

        # TRL turns activation checkpointing on by default; ours follows training.gradient_checkpointing
        # (it also drops prefix tuning's key/value prefixes, which ride in the cache).
        extra.setdefault("activation_checkpointing", self.cfg.training.gradient_checkpointing)
        return training_arguments(self.cfg, self, run.run_dir / "checkpoints", args_class=args_class, **extra)

    def build_trainer(self, run, callback):
        from trl import SFTConfig, SFTTrainer

        d = self.cfg.data
        args = self.trainer_args(run, SFTConfig, max_length=d.max_length, packing=d.packing,
                                 completion_only_loss=d.completion_only_loss, dataset_num_proc=data_mod.num_proc())
        trainer = trains_after_evaluate(SFTTrainer)(model=run.model, args=args, train_dataset=run.dataset["train"],
                             eval_dataset=run.dataset["validation"], processing_class=run.tokenizer,
                             callbacks=self._callbacks(callback))
        return self._count_tokens(trainer, run)

    def _callbacks(self, callback):
        from transformers import EarlyStoppingCallback

        t = self.cfg.training
        cbs = [callback]
        if t.early_stopping_patience:
            cbs.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
        return cbs

    @staticmethod
    def _count_tokens(trainer, run):
        run.counter.collator = trainer.data_collator
        trainer.data_collator = run.counter
        return trainer

    def postprocess_eval(self, metrics):
        for key in list(metrics):
            if key.endswith("_loss"):
                try:
                    metrics[key[: -len("loss")] + "perplexity"] = math.exp(metrics[key])
                except OverflowError:
                    metrics[key[: -len("loss")] + "perplexity"] = float("inf")
        return metrics


@register("dpo")
class DPO(SFT):
    """Preference tuning with TRL's DPOTrainer: prompt / chosen / rejected, pull strength `beta`.

    With a PEFT method the reference model is the base with the adapter switched off (no copy)."""

    def columns(self):
        d = self.cfg.data
        return [("prompt", d.prompt_column), ("chosen", d.chosen_column), ("rejected", d.rejected_column)]

    def _infer_columns(self, first) -> None:
        pass

    def _conversational(self, ds) -> bool:
        return len(ds) > 0 and isinstance(ds[0][self.cfg.data.chosen_column], list)

    def format(self, ds):
        d = self.cfg.data
        return self._select(ds, {d.prompt_column: "prompt", d.chosen_column: "chosen", d.rejected_column: "rejected"})

    def postprocess_eval(self, metrics):
        return metrics

    def build_trainer(self, run, callback):
        from trl import DPOConfig, DPOTrainer

        args = self.trainer_args(run, DPOConfig, beta=self.cfg.training.beta, max_length=self.cfg.data.max_length,
                                 dataset_num_proc=data_mod.num_proc())
        trainer = trains_after_evaluate(DPOTrainer)(model=run.model, args=args, train_dataset=run.dataset["train"],
                                                    eval_dataset=run.dataset["validation"],
                                                    processing_class=run.tokenizer,
                                                    callbacks=self._callbacks(callback))
        return self._count_tokens(trainer, run)

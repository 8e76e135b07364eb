"""Tasks: what the model learns, from which columns, judged by which metrics.

A small registry: `TASKS[name]` is a `Task` subclass. Each task knows how to load its model
class, prepare data, collate batches, compute metrics, and build its Trainer. Adding one
(sft, dpo) means adding a class here, not branches elsewhere.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from engine import data as data_mod
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
        from engine import models

        return models.load_model(self.cfg, path, self.model_class(), **self.model_kwargs())

    def trainer_metric(self) -> str:
        """The metric name Trainer sees (for early stopping / best model): one compute_metrics gives."""
        m = self.cfg.main_metric
        return "loss" if m in ("loss", "perplexity") else m

    def build_trainer(self, run, callback):
        from transformers import EarlyStoppingCallback, Trainer

        from engine.runner import training_arguments

        t = self.cfg.training
        callbacks = [callback]
        if t.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold))
        return Trainer(
            model=run.model, args=training_arguments(self.cfg, self, run.run_dir / "checkpoints"),
            train_dataset=run.dataset["train"], eval_dataset=run.dataset["validation"],
            data_collator=run.counter, processing_class=run.tokenizer,
            compute_metrics=self.compute_metrics(), callbacks=callbacks,
        )

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
        return [("text", self.cfg.data.text_column), ("label", self.cfg.data.label_column)]

    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def tokenize(self, ds, tokenizer):
        d = self.cfg.data
        ds = ds.map(lambda b: b, batched=True)  # materialise before relabelling
        self.label_names, ds = data_mod.label_names(ds, d.label_column)
        ds = _text_column_clean(ds, d.text_column)

        def enc(batch):
            out = tokenizer(batch[d.text_column], truncation=True, max_length=d.max_length)
            out["labels"] = batch[d.label_column]
            return out

        cols = ds["train"].column_names
        ds = ds.map(enc, batched=True, remove_columns=cols, num_proc=data_mod.num_proc())
        return ds

    def model_kwargs(self):
        n = len(self.label_names)
        return {"num_labels": n, "id2label": dict(enumerate(self.label_names)),
                "label2id": {name: i for i, name in enumerate(self.label_names)}}

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

        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=self.cfg.data.mlm_probability,
                                               pad_to_multiple_of=8)

    def postprocess_eval(self, metrics):
        for key in list(metrics):
            if key.endswith("_loss"):
                prefix = key[: -len("loss")]
                try:
                    metrics[prefix + "perplexity"] = math.exp(metrics[key])
                except OverflowError:
                    metrics[prefix + "perplexity"] = float("inf")
        return metrics

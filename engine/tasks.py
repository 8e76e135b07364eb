"""Tasks: what the model learns, from which columns, and how its Trainer is built.

`TASKS[name]` is a `Task` subclass attached to its spec in the light registry (tuitune/tasks.py),
which holds the names, metrics, heads and what predict answers. Each class knows how to load its
model class, prepare data, collate batches, compute metrics and build its Trainer from explicit
parts. Adding a task means a spec there and a class here, not branches elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tuitune import tasks as registry
from tuitune.config import RunConfig
from tuitune.engine import data as data_mod
from tuitune.engine.trainer_args import training_arguments
from tuitune.errors import TuituneError

TASKS: dict[str, type["Task"]] = {}


def register(name: str) -> Callable[[type["Task"]], type["Task"]]:
    """Attach a task class to its spec in the registry (tuitune/tasks.py), the one place names live."""
    def deco(cls: type["Task"]) -> type["Task"]:
        cls.spec = registry.TASKS[name]  # KeyError here: add the spec to tuitune/tasks.py first
        cls.name = name
        TASKS[name] = cls
        return cls
    return deco


def get_task(cfg: RunConfig) -> "Task":
    registry.task_spec(cfg.task)  # one-line error for a name the registry does not know
    return TASKS[cfg.task](cfg)


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
    """One run's task. What it *is* (metrics, heads, what predict answers) is its `spec`; what it
    *does* (data, model class, Trainer) is these methods."""

    spec: registry.TaskSpec
    name = "base"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.label_names: list[str] = []
        self.eval_split = "validation"  # the split being evaluated (the runner sets "test" around the test one)
        self.last_detail: Optional[dict[str, Any]] = None  # what the latest evaluation saw beyond its metrics

    @property
    def main_metric(self) -> str:
        return self.cfg.main_metric

    @property
    def head_modules(self) -> tuple[str, ...]:
        return self.spec.head_modules

    @property
    def peft_task_type(self) -> Optional[str]:
        return self.spec.peft_task_type

    # -- data ---------------------------------------------------------------------------------
    def columns(self) -> list[tuple[str, Optional[str]]]:
        return [("text", self.cfg.data.text_column)]

    def prepare(self, tokenizer):
        """Load, check columns, split, tokenize. Returns a DatasetDict ready for the Trainer."""
        raw = data_mod.load_raw(self.cfg.data)
        first = raw[self.cfg.data.train_split] if self.cfg.data.train_split in raw else next(iter(raw.values()))
        self.check_columns(first)
        ds = data_mod.splits(raw, self.cfg.data, self.cfg.training.seed)
        return self.tokenize(ds, tokenizer)

    def check_columns(self, first) -> None:
        data_mod.require_columns(first, self.columns())

    def tokenize(self, ds, tokenizer):
        raise NotImplementedError

    # -- model --------------------------------------------------------------------------------
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

    # -- training -----------------------------------------------------------------------------
    def build_trainer(self, *, model, datasets, collator, tokenizer, callbacks, output_dir: Path):
        from transformers import Trainer

        trainer = trains_after_evaluate(Trainer)(
            model=model, args=training_arguments(self.cfg, output_dir),
            train_dataset=datasets["train"], eval_dataset=datasets["validation"],
            data_collator=collator, processing_class=tokenizer,
            compute_metrics=self.compute_metrics(), callbacks=callbacks,
            preprocess_logits_for_metrics=self.preprocess_logits(),
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

    def preprocess_logits(self) -> Optional[Callable]:
        """Shrinks each evaluation batch's logits before Trainer keeps them (None: keep as they are)."""
        return None

    def record_evaluation(self, history, run_id: int, phase: str, step: int) -> None:
        """Store what the latest evaluation saw beyond its metrics (the classifier: per-class report,
        confusion matrix, and after the final one its mistakes). Main process only."""

    def postprocess_eval(self, metrics: dict[str, float]) -> dict[str, float]:
        """Add what Trainer cannot compute itself: perplexity = exp(loss), where the task reports it."""
        if "perplexity" not in self.spec.metrics:
            return metrics
        for key in list(metrics):
            if key.endswith("_loss"):
                try:
                    metrics[key[: -len("loss")] + "perplexity"] = math.exp(metrics[key])
                except OverflowError:
                    metrics[key[: -len("loss")] + "perplexity"] = float("inf")
        return metrics

    def meta(self) -> dict[str, Any]:
        """What predict needs to know about the trained model (saved next to it)."""
        return {"task": self.name, "label_names": self.label_names}


def _text_column_clean(ds, column: str):
    return ds.filter(lambda b: [isinstance(t, str) and bool(t.strip()) for t in b[column]], batched=True)


@register("classification")
class Classification(Task):
    """A new classifier head on an encoder or decoder; labels from data.label_column."""

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

        # the evaluated rows' texts, in order, for the error browser (Trainer evaluates in order)
        self.texts = {split: list(ds[split][d.text_column]) for split in ("validation", "test") if split in ds}
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
            from tuitune.engine.evaluation import softmax

            logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
            logits = np.asarray(logits, dtype=np.float64)
            pred = logits.argmax(-1)
            ref = np.asarray(p.label_ids)
            self.last_detail = {"split": self.eval_split, "pred": pred, "ref": ref, "probs": softmax(logits)}
            return {"accuracy": float((pred == ref).mean()), "f1": macro_f1(pred, ref, n)}

        return metrics

    def record_evaluation(self, history, run_id, phase, step):
        from tuitune.engine import evaluation

        d = self.last_detail
        if d is None:
            return
        labels = self.label_names or [str(i) for i in range(d["probs"].shape[-1])]
        report, matrix = evaluation.class_report(d["pred"], d["ref"], labels)
        history.log_class_report(run_id, phase, step, labels, report, matrix)
        if phase == "final":
            texts = getattr(self, "texts", {}).get(d["split"])
            errors = evaluation.misclassified(d["pred"], d["ref"], d["probs"], texts, labels,
                                              self.cfg.evaluation.max_errors)
            history.log_errors(run_id, phase, step, errors)


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
    """Masked-LM pre-training continued on the user's text (domain adaptation)."""

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

    def preprocess_logits(self):
        def top5(logits, labels):
            if isinstance(logits, tuple):
                logits = logits[0]
            return logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # not the whole vocabulary per token

        return top5

    def compute_metrics(self):
        def metrics(p):
            """Top-1 / top-5 accuracy over the masked-out positions (labels != -100)."""
            top = np.asarray(p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions)
            ref = np.asarray(p.label_ids)
            if top.ndim == ref.ndim:  # a single candidate per position
                top = top[..., None]
            n = min(top.shape[1], ref.shape[1])  # rows padded to the longest batch (predictions and labels alike)
            top, ref = top[:, :n], ref[:, :n]
            mask = ref != -100
            if not mask.any():
                return {}
            hits = top == ref[..., None]
            return {"top1_accuracy": float(hits[..., 0][mask].mean()), "top5_accuracy": float(hits.any(-1)[mask].mean())}

        return metrics

    def num_virtual_tokens(self) -> int:
        """Soft prompts make the logits longer than the labels: predict and labels shift by this much."""
        return self.cfg.method.num_virtual_tokens if self.cfg.method.name == "prompt_tuning" else 0

    def meta(self):
        return dict(super().meta(), num_virtual_tokens=self.num_virtual_tokens())


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

class CausalLMTask(Task):
    """What SFT and DPO share: a causal LM, data renamed to TRL's columns (no tokenizing here: the
    TRL trainer does it), TRL's own collator (wrapped to count tokens), TRL's config class."""

    trl_config: str  # the TRL config / trainer class names, e.g. "SFTConfig", "SFTTrainer"
    trl_trainer: str

    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def prepare(self, tokenizer):
        raw = data_mod.load_raw(self.cfg.data)
        first = raw[self.cfg.data.train_split] if self.cfg.data.train_split in raw else next(iter(raw.values()))
        self.check_columns(first)
        ds = data_mod.splits(raw, self.cfg.data, self.cfg.training.seed)
        self._check_chat_template(tokenizer, ds["train"])
        return self.format(ds)

    def format(self, ds):
        raise NotImplementedError

    def conversational(self, ds) -> bool:
        """Chat data (lists of {role, content}) rather than plain text."""
        raise NotImplementedError

    def _check_chat_template(self, tokenizer, train) -> None:
        if self.conversational(train) and not getattr(tokenizer, "chat_template", None):
            raise TuituneError(
                f"model {self.cfg.model.name_or_path} has no chat template but the data is chat messages: "
                "use a chat/instruct model, or plain-text prompt/completion columns"
            )

    @staticmethod
    def _select(ds, keep: dict[str, str]):
        """Keep the columns in `keep`, renamed to TRL's names; drop the rest."""
        drop = [c for c in ds["train"].column_names if c not in keep]
        ds = ds.remove_columns(drop)
        renames = {a: b for a, b in keep.items() if a != b}
        return ds.rename_columns(renames) if renames else ds

    def collator(self, tokenizer):
        return None  # TRL's trainers bring their own; build_trainer wraps it in the token counter

    def trl_arguments(self) -> dict[str, Any]:
        """This task's fields of its TRL config class."""
        return {}

    def build_trainer(self, *, model, datasets, collator, tokenizer, callbacks, output_dir: Path):
        import trl

        # TRL turns activation checkpointing on by default; ours follows training.gradient_checkpointing
        # (it also drops prefix tuning's key/value prefixes, which ride in the cache).
        args = training_arguments(self.cfg, output_dir, args_class=getattr(trl, self.trl_config),
                                  activation_checkpointing=self.cfg.training.gradient_checkpointing,
                                  max_length=self.cfg.data.max_length, dataset_num_proc=data_mod.num_proc(),
                                  **self.trl_arguments())
        trainer = trains_after_evaluate(getattr(trl, self.trl_trainer))(
            model=model, args=args, train_dataset=datasets["train"], eval_dataset=datasets["validation"],
            processing_class=tokenizer, callbacks=callbacks)
        if isinstance(collator, TokenCounter):  # count the tokens TRL's collator hands out
            collator.collator = trainer.data_collator
            trainer.data_collator = collator
        return trainer


@register("sft")
class SFT(CausalLMTask):
    """Supervised fine-tuning of a causal LM with TRL's SFTTrainer.

    Data is either chat `messages` (rendered with the model's chat template) or prompt/completion
    pairs. With `data.completion_only_loss` the loss covers only the answer: a conversation is split
    into its history (prompt) and its last assistant turn (completion).
    """

    trl_config, trl_trainer = "SFTConfig", "SFTTrainer"

    def columns(self):
        d = self.cfg.data
        if d.messages_column:
            return [("messages", d.messages_column)]
        return [("prompt", d.prompt_column), ("completion", d.completion_column)]

    def check_columns(self, first) -> None:
        """A dataset with a `messages` column and no prompt/completion is chat data."""
        d = self.cfg.data
        cols = first.column_names
        if not d.messages_column and "messages" in cols and d.prompt_column not in cols:
            d.messages_column = "messages"
        super().check_columns(first)

    def conversational(self, ds) -> bool:
        d = self.cfg.data
        col = d.messages_column or d.prompt_column
        sample = ds[0][col] if len(ds) else None
        return isinstance(sample, list)

    def format(self, ds):
        """Rename the user's columns to TRL's (messages | prompt, completion); drop the rest."""
        d = self.cfg.data
        if d.messages_column:
            if d.completion_only_loss:
                return ds.map(self._split_last_turn, batched=True, remove_columns=ds["train"].column_names)
            return self._select(ds, {d.messages_column: "messages"})
        return self._select(ds, {d.prompt_column: "prompt", d.completion_column: "completion"})

    def _split_last_turn(self, batch):
        """A conversation as prompt (its history) and completion (its last assistant turn)."""
        prompts, completions = [], []
        for conv in batch[self.cfg.data.messages_column]:
            if not conv or conv[-1].get("role") != "assistant":
                raise TuituneError("each conversation must end with an assistant message "
                                   "(or set data.completion_only_loss=false)")
            prompts.append(conv[:-1])
            completions.append(conv[-1:])
        return {"prompt": prompts, "completion": completions}

    def trl_arguments(self):
        d = self.cfg.data
        return {"packing": d.packing, "completion_only_loss": d.completion_only_loss}


@register("dpo")
class DPO(CausalLMTask):
    """Preference tuning with TRL's DPOTrainer: prompt / chosen / rejected, pull strength `beta`.

    With a PEFT method the reference model is the base with the adapter switched off (no copy)."""

    trl_config, trl_trainer = "DPOConfig", "DPOTrainer"

    def columns(self):
        d = self.cfg.data
        return [("prompt", d.prompt_column), ("chosen", d.chosen_column), ("rejected", d.rejected_column)]

    def conversational(self, ds) -> bool:
        return len(ds) > 0 and isinstance(ds[0][self.cfg.data.chosen_column], list)

    def format(self, ds):
        d = self.cfg.data
        return self._select(ds, {d.prompt_column: "prompt", d.chosen_column: "chosen", d.rejected_column: "rejected"})

    def trl_arguments(self):
        return {"beta": self.cfg.training.beta}

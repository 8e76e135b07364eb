"""The run configuration: one pydantic schema, assembled from per-concern parts.

Field names follow Hugging Face's `TrainingArguments`, `peft` and `BitsAndBytesConfig` where one
exists, so a user who knows those recognises them. Rules that involve more than one field live in
`model_validator`s and say, in words, what to change.

Loading: `load_config(source, overrides)` takes a preset name or a YAML file, applies
`--set key=value` overrides, and validates; every failure is a `TuituneError` with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuitune import tasks as registry
from tuitune.errors import TuituneError

# The names come from the one registry (tuitune/tasks.py); these tuples are its keys, for Literal.
TASKS = registry.TASK_NAMES
METHODS = registry.METHOD_NAMES
REPORT_TO = ("tensorboard", "mlflow", "wandb")  # Trainer's own integrations, named as it names them


# The schema's version, stored in every config. Renaming or removing a key: bump it and add the old
# key to RENAMED, so every run already in a history (re-validated on resume, predict and clone) and
# every YAML file still reads.
CONFIG_VERSION = 1
# (version that made the change, old dotted key, new dotted key or None when the key was removed)
RENAMED: list[tuple[int, str, Optional[str]]] = []
# Configs stored before config_version existed carry no version: they are version 1.
UNVERSIONED = 1


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Part):
    name_or_path: str = Field(description="Hub id (bert-base-cased), a local folder, or demo:minilm")
    revision: Optional[str] = None
    trust_remote_code: bool = Field(False, description="Run code shipped with the model (off by default)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("name_or_path")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model name must not be empty: give a hub id, a folder or demo:minilm")
        return v.strip()


class DataConfig(_Part):
    path: str = Field(description="Hub dataset name, a local csv/json/jsonl/parquet/txt file or folder "
                                  "(splits from file names, as datasets reads a folder), a save_to_disk "
                                  "folder, or demo:NAME")
    name: Optional[str] = Field(None, description="Hub dataset config name")
    eval_path: Optional[str] = Field(None, description="A separate local file or folder for the validation split")
    test_path: Optional[str] = Field(None, description="A separate local file or folder for the test split")
    train_split: str = "train"
    eval_split: Optional[str] = Field(None, description="Validation split; carved from train when absent")
    test_split: Optional[str] = Field(None, description="Test split evaluated at the end (test when test_path is set)")
    validation_size: float = Field(0.1, gt=0, lt=1, description="Fraction of train carved off as validation")
    text_column: str = "text"
    text_pair_column: Optional[str] = Field(None, description="Second text of a pair (NLI, paraphrase): "
                                                              "tokenized as tokenizer(text, text_pair)")
    label_column: Optional[str] = "label"
    max_length: int = Field(128, gt=0, le=131072)
    max_train_samples: Optional[int] = Field(None, gt=0)
    max_eval_samples: Optional[int] = Field(None, gt=0)
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    # Causal LM data (sft / dpo)
    messages_column: Optional[str] = None
    prompt_column: Optional[str] = "prompt"
    completion_column: Optional[str] = "completion"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    packing: bool = False
    completion_only_loss: bool = True


class MethodConfig(_Part):
    name: Literal[METHODS] = "full"  # type: ignore[valid-type]
    # LoRA family (peft names, prefixed so messages are unambiguous)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: Optional[list[str]] = Field(None, description="None: sensible defaults per architecture")
    modules_to_save: Optional[list[str]] = Field(None, description="None: the task head")
    use_rslora: bool = False
    use_dora: bool = False
    # Selective
    freeze_layers: int = Field(0, ge=0, description="freeze_layers: how many of the first layers to freeze")
    # Additive
    num_virtual_tokens: int = Field(20, gt=0)
    prompt_tuning_init: Literal["random", "text"] = "random"
    prompt_tuning_init_text: Optional[str] = None

    @field_validator("lora_r")
    @classmethod
    def _r(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("lora_r must be > 0")
        return v

    @field_validator("lora_alpha")
    @classmethod
    def _alpha(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("lora_alpha must be > 0")
        return v

    @model_validator(mode="after")
    def _text_init(self) -> "MethodConfig":
        if self.name == "prompt_tuning" and self.prompt_tuning_init == "text" and not self.prompt_tuning_init_text:
            raise ValueError("prompt_tuning_init 'text' needs prompt_tuning_init_text (the words to start from)")
        for flag in ("use_rslora", "use_dora"):
            if getattr(self, flag) and registry.METHODS[self.name].family != "reparameterisation":
                raise ValueError(f"method.{flag} applies to LoRA: set method.name to lora or qlora (now {self.name})")
        return self


class QuantizationConfig(_Part):
    load_in: Literal["none", "8bit", "4bit"] = "none"
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class TrainingConfig(_Part):
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="-1: run num_train_epochs")
    per_device_train_batch_size: int = Field(16, gt=0)
    per_device_eval_batch_size: int = Field(32, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay",
    ] = "linear"
    warmup_steps: float = Field(0.0, ge=0, description="Steps; a value below 1 is a ratio of all steps")
    optim: str = "adamw_torch"
    max_grad_norm: float = Field(1.0, ge=0)
    seed: int = 42
    logging_steps: int = Field(10, gt=0)
    eval_steps: Optional[int] = Field(None, gt=0, description="None: evaluate once per epoch")
    save_steps: Optional[int] = Field(None, gt=0, description="Checkpoint every N steps (None: at each eval)")
    save_total_limit: int = Field(2, gt=0)
    early_stopping_patience: Optional[int] = Field(None, gt=0)
    early_stopping_threshold: float = Field(0.0, ge=0)
    metric_for_best_model: Optional[str] = Field(None, description="None: the task's main metric")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field("auto", description="auto: bf16/fp16 when the GPU has it")
    gradient_checkpointing: bool = False
    use_cpu: bool = False
    dataloader_num_workers: int = Field(0, ge=0)
    beta: float = Field(0.1, gt=0, description="DPO: strength of the pull towards the reference model")
    processes: int = Field(1, gt=0, description="Processes per node (DDP through torchrun)")
    launcher_args: list[str] = Field(
        default_factory=list,
        description="Extra torchrun arguments replacing --standalone, e.g. for several nodes: "
                    "[--nnodes=2, --node_rank=0, --rdzv_backend=c10d, --rdzv_endpoint=HOST:29500]")
    fsdp: bool = Field(False, description="FSDP (fully sharded) instead of DDP across the processes")
    fsdp_config: dict[str, Any] = Field(default_factory=dict,
                                        description="TrainingArguments' fsdp_config, e.g. {cpu_offload: true}")
    auto_retry_oom: bool = Field(False, description="On out-of-memory: halve the batch, double accumulation, retry")
    checkpoint_every_minutes: Optional[float] = Field(
        30.0, ge=0, description="Also checkpoint when this many minutes passed since the last one (0 or null: off)")
    report_to: list[Literal[REPORT_TO]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="Also log to tensorboard, mlflow and/or wandb (Trainer's names)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> Any:
        if v is None or v == "none":
            return []
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip() and x.strip() != "none"]
        return v

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("max_steps must be > 0 (or -1 to run num_train_epochs)")
        return v


class EvaluationConfig(_Part):
    baseline: bool = Field(True, description="Evaluate once before training so the gain is visible")
    on_test: bool = Field(True, description="Also evaluate on the test split when there is one")
    probes: Optional[list[str]] = Field(
        None, description="Inputs answered at the baseline, every evaluation and the end (None: the task's "
                          "defaults; []: none). Masked LM: each holds [MASK] or <mask>")
    probe_max_new_tokens: int = Field(24, gt=0, le=512, description="SFT/DPO probes: greedy answer length")
    max_errors: int = Field(200, ge=0, description="Misclassified evaluation rows kept after the final evaluation")

    @field_validator("probes")
    @classmethod
    def _probes(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and any(not isinstance(p, str) or not p.strip() for p in v):
            raise ValueError("evaluation.probes must be non-empty texts")
        return v


class WatchdogConfig(_Part):
    """Stops a diverging run: a NaN/Inf loss at once; a loss far above its best for several logs."""

    enabled: bool = Field(True, description="Stop the run when the training loss diverges")
    loss_factor: float = Field(3.0, gt=1, description="Diverged: loss above this many times its best average")
    loss_margin: float = Field(1.0, ge=0, description="... and at least this much above it (tiny losses wobble)")
    patience: int = Field(3, gt=0, description="... for this many logged losses in a row")


class RunConfig(_Part):
    config_version: int = Field(CONFIG_VERSION, description="Schema version; older configs are upgraded on reading")
    name: Optional[str] = Field(None, description="A label for this run (the preset name by default)")
    task: Literal[TASKS] = "classification"  # type: ignore[valid-type]
    model: ModelConfig
    data: DataConfig
    method: MethodConfig = MethodConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    watchdog: WatchdogConfig = WatchdogConfig()

    @model_validator(mode="after")
    def _cross(self) -> "RunConfig":
        q, m = self.quantization, registry.METHODS[self.method.name]
        if m.needs_4bit and q.load_in != "4bit":
            raise ValueError(f"method {m.name} needs quantization.load_in: 4bit (QLoRA = 4-bit base + LoRA)")
        if q.load_in != "none" and not m.trains_quantized:
            raise ValueError(
                f"a {q.load_in} quantized model cannot be trained with method {m.name}: "
                "use lora/qlora (or quantization.load_in: none)"
            )
        if self.spec.has_labels and not self.data.label_column:
            raise ValueError(f"task {self.task} needs data.label_column")
        if self.data.text_pair_column and not self.spec.has_labels:
            raise ValueError(f"data.text_pair_column applies to classification, not {self.task}: remove it")
        if m.name not in self.spec.methods:
            raise ValueError(f"task {self.task} does not support method {m.name}: use one of {', '.join(self.spec.methods)}")
        self._check_metric()
        self._check_probes()
        t = self.training
        if t.fsdp and t.processes < 2 and not t.launcher_args:
            raise ValueError("training.fsdp shards the model across processes: set training.processes > 1")
        if t.fsdp and q.load_in != "none":
            raise ValueError("training.fsdp does not shard bitsandbytes-quantized models: use DDP (fsdp: false) for QLoRA")
        if self.training.eval_steps and self.training.save_steps and self.training.early_stopping_patience:
            if self.training.save_steps % self.training.eval_steps:
                raise ValueError("with early stopping, training.save_steps must be a multiple of training.eval_steps")
        return self

    def _check_metric(self) -> None:
        chosen = self.training.metric_for_best_model
        if chosen is not None and chosen.removeprefix("eval_") not in self.spec.metrics:
            raise ValueError(f"training.metric_for_best_model {chosen!r} is not a metric task {self.task} reports: "
                             f"use one of {', '.join(self.spec.metrics)}")

    def _check_probes(self) -> None:
        if self.spec.predicts != "fill-mask":
            return
        for text in self.probe_inputs:
            if not any(m in text for m in registry.MASK_SPELLINGS):
                raise ValueError(f"evaluation.probes: {text[:60]!r} has no mask token: a masked-LM probe needs "
                                 "[MASK] (or <mask>) where the model fills in a word")

    @property
    def probe_inputs(self) -> list[str]:
        """The probes this run answers: evaluation.probes, or the task's defaults when unset."""
        p = self.evaluation.probes
        return list(self.spec.default_probes) if p is None else list(p)

    @property
    def spec(self) -> registry.TaskSpec:
        return registry.TASKS[self.task]

    @property
    def main_metric(self) -> str:
        """The one metric a run is judged by: the runner records it and Trainer optimises it.
        The task's main metric unless training.metric_for_best_model names another it reports."""
        chosen = self.training.metric_for_best_model
        return chosen.removeprefix("eval_") if chosen else self.spec.main_metric

    @property
    def greater_is_better(self) -> bool:
        return self.spec.direction(self.main_metric) == registry.MAXIMIZE

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Loading, overrides and one-line messages

def describe_validation_error(err: ValidationError) -> str:
    """A pydantic error as one line a user can act on."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{loc}' (check its spelling and section)"
            parts.append(msg)
            continue
        if e["type"] == "missing":
            parts.append(f"{loc}: missing (required)")
            continue
        if e["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of")
        elif msg.startswith("Input should be"):
            msg = "must be" + msg[len("Input should be"):]
        got = e.get("input")
        suffix = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
        parts.append(f"{loc}: {msg}{suffix}" if loc else msg)
    return "; ".join(parts)


def upgrade_config(data: dict[str, Any], *, default_version: Optional[int] = None) -> dict[str, Any]:
    """A config written by an older tuitune, in today's shape: renamed keys moved, removed keys
    dropped (a warning lists them), `config_version` set to today's. A config without a version is
    `default_version` (today's for a YAML file a user writes). A newer config: a one-line error."""
    import copy
    import logging

    if not isinstance(data, dict):
        return data
    version = data.get("config_version", CONFIG_VERSION if default_version is None else default_version)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TuituneError(f"config_version must be a whole number >= 1 (got {version!r})")
    if version > CONFIG_VERSION:
        raise TuituneError(f"config_version {version} is newer than this tuitune reads ({CONFIG_VERSION}): "
                           "upgrade tuitune (pip install -U tuitune)")
    data = copy.deepcopy(data)
    notes = []
    for since, old, new in RENAMED:
        if since <= version:
            continue
        *parents, leaf = old.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node.pop(leaf)
        if new is None:
            notes.append(f"{old} removed")
            continue
        *nparents, nleaf = new.split(".")
        target = data
        for part in nparents:
            target = target.setdefault(part, {})
        target.setdefault(nleaf, value)
        notes.append(f"{old} -> {new}")
    data["config_version"] = CONFIG_VERSION
    if notes:
        logging.getLogger("tuitune.config").warning(
            "config version %s upgraded to %s: %s", version, CONFIG_VERSION, "; ".join(notes))
    return data


def clone_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored run's config as the draft of a new run (today's shape, name marked as a clone)."""
    cfg = upgrade_config(stored, default_version=UNVERSIONED)
    cfg["name"] = f"{cfg.get('name') or 'run'}-clone"
    return cfg


def stored_config(data: dict[str, Any]) -> RunConfig:
    """A run's config as the history stored it (any older version), validated today."""
    return validate_config(data, default_version=UNVERSIONED)


def validate_config(data: dict[str, Any], *, default_version: Optional[int] = None) -> RunConfig:
    if not isinstance(data, dict):
        raise TuituneError("config must be a YAML mapping (key: value lines), not a " + type(data).__name__)
    data = upgrade_config(data, default_version=default_version)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise TuituneError("invalid config: " + describe_validation_error(err)) from None


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise TuituneError(f"--set needs key=value (e.g. training.learning_rate=3e-5), got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise TuituneError(f"--set needs a key before '=', got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML reads 3e-5 as a string; numbers users type should be numbers.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise TuituneError(f"--set {'.'.join(path)}: '{part}' is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TuituneError(f"config file not found: {path}") from None
    except UnicodeDecodeError:
        raise TuituneError(f"config file {path} is not UTF-8 text") from None
    except OSError as err:
        raise TuituneError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TuituneError(f"config file {path} is not valid YAML{where}: fix the syntax there") from None
    if data is None:
        raise TuituneError(f"config file {path} is empty")
    if not isinstance(data, dict):
        raise TuituneError(f"config file {path} must be a YAML mapping (key: value lines)")
    return data


def load_config(source: str, overrides: Optional[list[str]] = None) -> RunConfig:
    """A preset name or a YAML path, plus `--set` overrides, validated."""
    from tuitune import presets

    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        data = read_yaml(path)
        default_name = path.stem
    else:
        data = read_yaml(presets.preset_path(source))
        default_name = source
    data.pop("sweep", None)  # a sweep preset runs once with its base values; `tuitune sweep` searches
    data = apply_overrides(data, list(overrides or []))
    data.setdefault("name", default_name)
    return validate_config(data)

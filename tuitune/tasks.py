"""The one registry of tasks and methods: their names and what the rest of tuitune asks about them.

Light on purpose (no torch): the config, the CLI and the UI read it to validate and describe runs,
and the engine's task classes attach to these specs by name (`engine/tasks.py`). A new task or
method is a spec here plus its engine class; nothing else tests names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAXIMIZE, MINIMIZE = "maximize", "minimize"

# Model types by family, for "which tasks fit this model" before anything is loaded.
ENCODER_TYPES = frozenset({"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert",
                           "xlm-roberta", "camembert", "mpnet", "modernbert", "ernie"})
DECODER_TYPES = frozenset({"llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi",
                           "phi3", "gpt_neox", "opt", "falcon", "smollm", "mixtral", "olmo", "granite"})

# Metrics a Trainer never sees (added after each evaluation) and the one it optimises instead;
# perplexity = exp(loss), so the best loss is the best perplexity.
TRAINER_PROXY = {"perplexity": "loss"}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: str  # selective | additive | reparameterisation
    needs_4bit: bool = False  # trains on a 4-bit base only (QLoRA)
    trains_quantized: bool = True  # can train a bitsandbytes-quantized base (adapters can; weights cannot)
    prompt_learning: bool = False  # soft prompts / prefixes in front of the input
    fields: tuple[str, ...] = ()  # the `method.*` settings this method reads (the wizard shows these only)


_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_rslora", "use_dora")
_PROMPT_FIELDS = ("num_virtual_tokens",)

METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("full", "selective", trains_quantized=False),
    MethodSpec("last_layer", "selective", trains_quantized=False),
    MethodSpec("freeze_layers", "selective", trains_quantized=False, fields=("freeze_layers",)),
    MethodSpec("bitfit", "selective", trains_quantized=False),
    MethodSpec("prompt_tuning", "additive", prompt_learning=True,
               fields=_PROMPT_FIELDS + ("prompt_tuning_init", "prompt_tuning_init_text")),
    MethodSpec("prefix_tuning", "additive", prompt_learning=True, fields=_PROMPT_FIELDS),
    MethodSpec("ia3", "additive", fields=("target_modules", "modules_to_save")),
    MethodSpec("lora", "reparameterisation", fields=_LORA_FIELDS),
    MethodSpec("qlora", "reparameterisation", needs_4bit=True, fields=_LORA_FIELDS),
)}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metrics: dict[str, str]  # every evaluation metric the task reports -> its direction; the first is the main one
    predicts: str  # what `tuitune predict` answers: labels | fill-mask | generation
    head_modules: tuple[str, ...]  # the task head (trains in last_layer; kept out of quantization if new)
    families: tuple[str, ...]  # model families it fits: encoder, decoder
    has_labels: bool = False  # needs data.label_column
    new_head: bool = False  # the head is created for the run (random weights): it must train and stay unquantized
    is_causal: bool = False  # a causal LM that generates
    peft_task_type: str | None = None  # peft's TaskType for LoRA / IA3 (None: no task type, plain model)
    prompt_task_type: str | None = None  # peft's TaskType for prompt/prefix tuning
    unsupported_methods: frozenset[str] = field(default_factory=frozenset)
    default_probes: tuple[str, ...] = ()  # inputs answered at every evaluation unless evaluation.probes says
    class_report: bool = False  # evaluations store per-class precision/recall/F1, the confusion matrix, errors
    pairs: bool = False  # each example is two sequences (DPO: chosen and rejected)

    @property
    def main_metric(self) -> str:
        return next(iter(self.metrics))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if m not in self.unsupported_methods)

    def direction(self, metric: str) -> str:
        return self.metrics[metric]

    def trainer_metric(self, metric: str) -> str:
        """The name Trainer's `metric_for_best_model` gets for `metric` (no `eval_` prefix)."""
        return TRAINER_PROXY.get(metric, metric)


# Masked-LM probes hold the mask token as [MASK] (BERT) or <mask> (RoBERTa): either is accepted and
# replaced by the model's own spelling.
MASK_SPELLINGS = ("[MASK]", "<mask>")
_MLM_PROBES = ("This is a [MASK] movie!", "The capital of France is [MASK].", "I [MASK] this film.",
               "The weather today is [MASK].")
_CHAT_PROBES = ("What is the capital of France?", "Give me one tip for sleeping better.",
                "Write a short greeting for a friend.")
_CAUSAL = dict(predicts="generation", head_modules=("lm_head",), families=("decoder",), is_causal=True,
               peft_task_type="CAUSAL_LM", prompt_task_type="CAUSAL_LM", default_probes=_CHAT_PROBES)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("classification", {"accuracy": MAXIMIZE, "f1": MAXIMIZE, "loss": MINIMIZE}, predicts="labels",
             head_modules=("classifier", "pooler", "score", "pre_classifier"), families=("encoder", "decoder"),
             has_labels=True, new_head=True, peft_task_type="SEQ_CLS", prompt_task_type="SEQ_CLS", class_report=True),
    # peft has no masked-LM task type: None works for LoRA / IA3; prompt learning forwards labels as FEATURE_EXTRACTION
    TaskSpec("mlm", {"perplexity": MINIMIZE, "loss": MINIMIZE, "top1_accuracy": MAXIMIZE, "top5_accuracy": MAXIMIZE},
             predicts="fill-mask",
             head_modules=("cls", "lm_head", "vocab_projector", "vocab_transform", "vocab_layer_norm"),
             families=("encoder",), prompt_task_type="FEATURE_EXTRACTION", default_probes=_MLM_PROBES),
    TaskSpec("sft", {"loss": MINIMIZE, "perplexity": MINIMIZE, "mean_token_accuracy": MAXIMIZE}, **_CAUSAL),
    TaskSpec("dpo", {"loss": MINIMIZE, "rewards/accuracies": MAXIMIZE, "rewards/margins": MAXIMIZE}, **_CAUSAL, pairs=True,
             unsupported_methods=frozenset({"prompt_tuning", "prefix_tuning"})),
)}

TASK_NAMES = tuple(TASKS)
METHOD_NAMES = tuple(METHODS)


def task_spec(name: str) -> TaskSpec:
    from tuitune.errors import TuituneError

    try:
        return TASKS[name]
    except KeyError:
        raise TuituneError(f"task {name!r} is not available: choose one of {', '.join(TASKS)}") from None


def model_family(model_type: str, architectures: list[str]) -> str:
    """encoder, decoder or "" (unknown), from config.json's model_type and architectures."""
    archs = " ".join(architectures).lower()
    if model_type in ENCODER_TYPES or "maskedlm" in archs:
        return "encoder"
    if model_type in DECODER_TYPES or "causallm" in archs:
        return "decoder"
    return ""


def tasks_for_model(model_type: str, architectures: list[str]) -> list[str]:
    """The tasks a model fits (every model can take a classification head)."""
    family = model_family(model_type, architectures)
    return [t.name for t in TASKS.values() if family in t.families or (t.new_head and not family)]

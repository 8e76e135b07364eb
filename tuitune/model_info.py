"""What a model is before anything loads it: architecture, parameter count (from safetensors
headers, no weights read), size on disk, the tasks it fits, and a rough training-memory estimate.

Plain Python (json, struct) plus `huggingface_hub` for the cache and the hub; never torch.
`inspect_model(name)` answers for a demo asset, a local folder, the HF cache or a hub id.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuitune import demo, paths
from tuitune.errors import TuituneError
from tuitune.tasks import tasks_for_model


@dataclass
class ModelInfo:
    name: str
    path: Optional[str]
    source: str  # demo | local | cache | hub
    architecture: str = "?"
    model_type: str = "?"
    params: Optional[int] = None
    size_bytes: Optional[int] = None
    hidden: Optional[int] = None
    layers: Optional[int] = None
    vocab: Optional[int] = None
    heads: Optional[int] = None
    tasks: list[str] = field(default_factory=list)
    note: str = ""

    intermediate: Optional[int] = None  # the MLP's inner width (None: 4 × hidden)
    gated_mlp: bool = False  # a gated MLP (Llama-style SiLU gate × up): four inner-width tensors per token, not two
    tied_embeddings: bool = True  # the LM head shares the input embeddings
    tokenizer_path: Optional[str] = None  # a folder with the model's tokenizer.json (token lengths without torch)
    attention_dropout: Optional[float] = None  # > 0 (or unknown): attention scores are kept for backward

    def memory(self, batch: int = 16, length: int = 128, task: str = "classification") -> dict[str, Optional[int]]:
        """Estimated peak memory (bytes) of a training process on CPU for full fine-tuning, LoRA
        and QLoRA: see `estimate` for what it counts."""
        if not self.params:
            return {"full": None, "lora": None, "qlora": None}
        return {m: self.estimate(m, batch, length, task=task, load_in="4bit" if m == "qlora" else "none")["total"]
                for m in ("full", "lora", "qlora")}

    def estimate(self, method: str, batch: int, length: int, *, task: str = "classification",
                 load_in: str = "none", virtual_tokens: int = 0, checkpointing: bool = False,
                 lora_targets: Optional[list[str]] = None, lora_dropout: float = 0.1) -> dict[str, int]:
        """Peak resident memory of the engine process training this model on CPU (fp32), in bytes,
        by part, for batches of `batch` rows padded to `length` tokens (`tuitune.dataset_info.
        batch_length` says how long the data's batches really are; data.max_length is the most).
        Calibrated against measured peaks of the demo presets (bench/memory_estimate.py):

        - runtime: Python with torch, transformers, datasets, peft and trl loaded, the tokenizer and
          the data (RUNTIME_BYTES);
        - weights: 4 B/param (fp32); a 4-bit base keeps its embeddings in fp32 and stores the rest in
          ~0.56 B/param (NF4 + block scales), 8-bit ~1.1 B/param (not measured); DPO without an adapter keeps a
          frozen reference copy too;
        - train state: gradients and AdamW's two moments of what trains, 12 B/param (full: all;
          adapters and the selective methods: ~1 %);
        - activations: what backward keeps per layer and token, ACT_PER_HIDDEN·hidden +
          ACT_PER_INNER·inner width (×1.5 for a gated MLP: three inner-width tensors, not two) +
          ACT_PER_HEAD·heads·length (attention scores, kept where attention has dropout: without,
          torch's fused attention keeps none), times layers (one layer for last_layer, which
          backpropagates through none; with gradient checkpointing, one hidden state per layer
          plus one layer's); DPO doubles the rows
          (chosen and rejected), prompt tuning lengthens them by its virtual tokens; LoRA with
          dropout keeps each adapted layer's dropped-out input too (fp32 + a 1-byte mask: 5 B per
          input unit; the default targets: two attention projections; DPO: none, TRL's DPOTrainer
          turns dropout off);
        - logits: a masked-LM head's batch·length·vocab fp32 logits, LOGIT_COPIES copies (logits,
          softmax, gradient); a causal LM's head runs through TRL's chunked log-prob kernel, which
          holds HEAD_TILES tiles of at most 4,096 tokens × 32,768 vocabulary entries in fp32.
        Not counted: a GPU (this is host memory), other processes (DDP: each its own).
        """
        p = self.params or 0
        spec = _task_spec(task)
        h, L = self.hidden or 768, self.layers or 12
        inner = self.intermediate or 4 * h
        heads = self.heads or max(1, h // 64)
        vocab = self.vocab or 0
        full = _method_trains_everything(method)
        embed = min(p, vocab * h * (1 if self.tied_embeddings else 2))  # kept in fp32 by bitsandbytes
        per_quantized = BNB4_BYTES if load_in == "4bit" else BNB8_BYTES
        weights = 4 * p if load_in not in ("4bit", "8bit") else int(4 * embed + per_quantized * (p - embed))
        pairs = spec is not None and spec.pairs
        if pairs and _method_family(method) == "selective":  # DPO without an adapter: a frozen reference copy
            weights *= 2
        state = 12 * p if full else int(12 * 0.01 * p)
        seqs = batch * (2 if pairs else 1)
        n = length + (virtual_tokens if _method_prompt_learning(method) else 0)
        scores = ACT_PER_HEAD * heads * n if self.attention_dropout is None or self.attention_dropout > 0 else 0
        per_token = ACT_PER_HIDDEN * h + ACT_PER_INNER * inner * (1.5 if self.gated_mlp else 1) + scores
        if _method_family(method) == "reparameterisation" and lora_dropout > 0 and not pairs:  # DPO: dropout off
            widths = [inner if _takes_inner(t) else h for t in (lora_targets or ["q", "v"])]
            per_token += 5 * sum(widths)
        if method == "last_layer":  # training only the head backpropagates through nothing: one layer at a time
            act = seqs * n * per_token
        elif checkpointing:  # each layer's input kept, one layer recomputed at a time
            act = seqs * n * (4 * h * L + per_token)
        else:
            act = seqs * n * per_token * L
        if spec is None or spec.predicts == "labels":
            logits = 0
        elif spec.is_causal:  # TRL's fused head: fixed-size tiles, never the whole logits
            logits = HEAD_TILES * min(seqs * max(1, n - 1), HEAD_TILE_TOKENS) * min(vocab, HEAD_TILE_VOCAB) * 4
        else:
            logits = seqs * n * vocab * 4 * LOGIT_COPIES
        parts = {"runtime": RUNTIME_BYTES, "weights": int(weights), "train_state": state, "activations": int(act),
                 "logits": int(logits)}
        parts["total"] = sum(parts.values())
        return parts


# Calibration of `ModelInfo.estimate` (bench/memory_estimate.py prints estimate vs measured peak).
RUNTIME_BYTES = 650 * 2**20  # fitted: MiniLM last_layer (almost nothing else) peaked at 742–839 MiB
ACT_PER_HIDDEN = 56  # bytes per hidden unit per token per layer: ~14 fp32 hidden-size tensors kept for backward
ACT_PER_INNER = 8  # bytes per MLP inner unit: 2 fp32 tensors (the up projection and its activation; gated: 3)
ACT_PER_HEAD = 16  # bytes per attention score per head (scores, softmax, dropout mask), with attention dropout
# bench/memory_terms.py measured SmolLM2 (LoRA, no attention dropout) at 56–59 KB per token per layer with LoRA on
# q/v, 75–77 KB on all 7 projections; these constants give 56.4 and 75.6.
LOGIT_COPIES = 3
HEAD_TILES = 10  # TRL's chunked log-prob on CPU: its tile buffer and the ~9 tile-sized torch temporaries its backward
# fold (`_backward_tile`) holds at once; bench/memory_terms.py measured 7–8 beside LoRA on q/v, 14–15 beside LoRA on
# all projections (why they differ is not pinned down)
HEAD_TILE_TOKENS, HEAD_TILE_VOCAB = 4096, 32768  # trl/kernels/chunked_logprob.py: TOKEN_CHUNK_SIZE, chunk_size
BNB4_BYTES = 0.5625  # NF4: 4 bits per weight + an fp32 absmax per 64 (double quantization shrinks it)
BNB8_BYTES = 1.1  # int8 + scales


def _part(cfg: Any, name: str) -> Any:
    return (cfg.get(name) or {}) if isinstance(cfg, dict) else getattr(cfg, name)


def draft_batch_length(info: ModelInfo, cfg: Any):
    """`dataset_info.batch_length` for a config (a RunConfig or the wizard's draft dict): how long
    its batches really are, token lengths read with this model's tokenizer when it has one.
    None when the data is not known or not readable here (the estimate then uses max_length)."""
    from tuitune.dataset_info import _get, batch_length

    task = (cfg.get("task") if isinstance(cfg, dict) else cfg.task) or "classification"
    spec = _task_spec(task)
    data, training = _part(cfg, "data"), _part(cfg, "training")
    batch = int(_get(training, "per_device_train_batch_size", 16))
    # Trainer's collators pad to a multiple of 8 (tuitune's), TRL's to the longest row on CPU
    return batch_length(data, task, batch, training=training, model_path=info.tokenizer_path,
                        pad_multiple=1 if spec is not None and spec.is_causal else 8)


def config_estimate(info: ModelInfo, cfg: Any, lengths: Any = "read") -> tuple[dict[str, int], Any]:
    """`ModelInfo.estimate` for a RunConfig: its method, batch, task, quantization, virtual tokens
    and checkpointing, at the padded length its data gives (`draft_batch_length`; max_length
    where unknown). Returns (parts, the BatchLength used or None)."""
    if lengths == "read":
        lengths = draft_batch_length(info, cfg)
    length = lengths.length if lengths is not None else cfg.data.max_length
    return info.estimate(cfg.method.name, cfg.training.per_device_train_batch_size, length, task=cfg.task,
                         load_in=cfg.quantization.load_in, virtual_tokens=cfg.method.num_virtual_tokens,
                         checkpointing=cfg.training.gradient_checkpointing, lora_targets=cfg.method.target_modules,
                         lora_dropout=cfg.method.lora_dropout), lengths


def _takes_inner(module: str) -> bool:
    """Whether a linear layer's input is the MLP's inner width (its down projection)."""
    return module.split(".")[-1] in ("down_proj", "fc2", "w2", "dense_4h_to_h", "lin2") or module == "output.dense"


def _method_family(method: str) -> str:
    from tuitune.tasks import METHODS

    spec = METHODS.get(method)
    return spec.family if spec else "selective"


def _method_prompt_learning(method: str) -> bool:
    from tuitune.tasks import METHODS

    spec = METHODS.get(method)
    return bool(spec and spec.prompt_learning)


def _task_spec(task: str):
    from tuitune.tasks import TASKS

    return TASKS.get(task)


def _method_trains_everything(method: str) -> bool:
    return method in ("full", "freeze_layers")


def safetensors_params(path: Path) -> Optional[int]:
    """Sum of tensor sizes from a safetensors header (8-byte length + JSON), no weights read."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        count = 1
        for d in v.get("shape", []):
            count *= d
        total += count
    return total


def _folder_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            pass
    return total


def _tasks_for(model_type: str, archs: list[str]) -> list[str]:
    return tasks_for_model(model_type, archs)  # the families live in the task registry


def model_from_folder(name: str, folder: Path, source: str) -> ModelInfo:
    info = ModelInfo(name=name, path=str(folder), source=source)
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise TuituneError(f"{folder} has no config.json: not a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TuituneError(f"{cfg_path} cannot be read as JSON ({err})") from None
    archs = cfg.get("architectures") or []
    info.architecture = ", ".join(archs) or cfg.get("model_type", "?")
    info.model_type = cfg.get("model_type", "?")
    info.hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("dim")
    info.layers = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("n_layers")
    info.vocab = cfg.get("vocab_size")
    info.heads = cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("n_heads")
    info.intermediate = next((cfg[k] for k in ("intermediate_size", "n_inner", "ffn_dim", "hidden_dim") if cfg.get(k)), None)
    act = str(cfg.get("hidden_act") or cfg.get("hidden_activation") or cfg.get("activation_function") or "")
    encoders = ("bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta", "albert", "mpnet")
    info.gated_mlp = (act in ("silu", "swish", "gelu_pytorch_tanh") and "intermediate_size" in cfg
                      and info.model_type not in encoders)  # Llama-style gate × up
    info.tied_embeddings = bool(cfg.get("tie_word_embeddings", True))
    drop = [cfg.get(k) for k in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")]
    info.attention_dropout = next((float(d) for d in drop if isinstance(d, (int, float))), None)
    if (folder / "tokenizer.json").exists():
        info.tokenizer_path = str(folder)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        counts = [safetensors_params(f) for f in files]
        if all(c is not None for c in counts):
            info.params = int(sum(counts))  # type: ignore[arg-type]
    if info.params is None and info.hidden and info.layers:
        h, L = info.hidden, info.layers
        info.params = 12 * L * h * h + (info.vocab or 30000) * h
        info.note = "parameter count estimated from config.json (no safetensors header)"
    info.size_bytes = _folder_size(folder)
    info.tasks = _tasks_for(info.model_type, archs)
    return info


def hf_cache_models() -> list[str]:
    """Model repo ids in the local Hugging Face cache (empty when there is none)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache dir, unreadable cache: nothing to offer
        return []
    return sorted(r.repo_id for r in info.repos if r.repo_type == "model")


def _cached_snapshot(repo_id: str) -> Optional[Path]:
    try:
        from huggingface_hub import scan_cache_dir

        for r in scan_cache_dir().repos:
            if r.repo_id == repo_id and r.repo_type == "model":
                revs = sorted(r.revisions, key=lambda x: x.last_modified)
                if revs:
                    return Path(revs[-1].snapshot_path)
    except Exception:
        return None
    return None


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for the picker: demo models, then the HF cache."""
    out = [(f"{a.name}  {a.description}", a.name) for a in demo.ASSETS.values() if a.kind == "model"]
    out += [(f"{r}  (HF cache)", r) for r in hf_cache_models()]
    return out


def inspect_model(name: str) -> ModelInfo:
    """Everything the Model screen shows. Raises TuituneError with one clear line."""
    name = (name or "").strip()
    if not name:
        raise TuituneError("type a model: a hub id (bert-base-cased), a local folder, or demo:minilm")
    if demo.is_demo(name):
        a = demo.asset(name)
        if a.kind != "model":
            raise TuituneError(f"{name} is a dataset, not a model")
        p = demo.path(name, fetch=False)
        if p.is_file():  # gguf demo (SmolLM2): converted by the engine on first use
            info = ModelInfo(name=name, path=str(p), source="demo", architecture="LlamaForCausalLM (gguf)",
                             model_type="llama", params=134_515_008, size_bytes=p.stat().st_size,
                             hidden=576, layers=30, vocab=49152, heads=9, tasks=tasks_for_model("llama", []),
                             intermediate=1536, gated_mlp=True, tied_embeddings=True, attention_dropout=0.0,
                             note="a GGUF file: the engine converts it to a model folder on first use")
            converted = paths.home() / "cache" / demo.SMOLLM2_CACHE  # its tokenizer, once converted
            if (converted / "tokenizer.json").exists():
                info.tokenizer_path = str(converted)
            return info
        return model_from_folder(name, p, "demo")
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise TuituneError(f"{p} is a file: give the model folder (the one with config.json)")
        return model_from_folder(name, p, "local")
    if name.startswith((".", "/", "~")):
        raise TuituneError(f"folder {p} does not exist: check the path")
    snap = _cached_snapshot(name)
    if snap is not None:
        return model_from_folder(name, snap, "cache")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise TuituneError(f"model {name!r} is not in the local cache and the hub is offline "
                           "(HF_HUB_OFFLINE=1): pick a demo or local model")
    try:
        from huggingface_hub import HfApi

        mi = HfApi().model_info(name, timeout=8, files_metadata=False)
    except Exception as err:  # noqa: BLE001 - any failure is "cannot reach or find"
        kind = type(err).__name__
        raise TuituneError(f"model {name!r} not found locally and the hub could not confirm it ({kind}): "
                           "check the name, or pick a demo or local model") from None
    info = ModelInfo(name=name, path=None, source="hub", architecture=", ".join(
        (mi.config or {}).get("architectures") or []) or "?", model_type=(mi.config or {}).get("model_type", "?"))
    st = getattr(mi, "safetensors", None)
    info.params = getattr(st, "total", None) if st else None
    info.tasks = _tasks_for(info.model_type, info.architecture.split(", "))
    info.note = "on the hub: downloaded when the run starts"
    return info

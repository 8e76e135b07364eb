"""What the UI needs to know, without torch: run history reads, model and dataset inspection.

Screens never talk to SQLite or the engine directly; they call these small functions from
Textual workers. Everything here is plain Python (json, csv, sqlite3), plus `tokenizers` (Rust,
light) for token-length statistics when the model folder has a `tokenizer.json`.

- `RunStore`: the history as the UI reads it (one `History` connection per thread).
- `inspect_model(name)`: architecture, parameter count (from safetensors headers), size on disk,
  task heads that fit, and a rough memory estimate for full / LoRA / QLoRA training.
- `inspect_dataset(path, ...)`: columns, preview rows, label counts, split sizes, token lengths.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuitune import demo
from tuitune.errors import TuituneError

# -- formatting (shared by screens) ----------------------------------------------------------------


def fmt_time(ms: Optional[int]) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def fmt_duration(run: dict, now_ms: Optional[int] = None) -> str:
    start = run.get("started_at")
    if not start:
        return "-"
    end = run.get("ended_at") or now_ms or int(time.time() * 1000)
    s = max(0, (end - start) // 1000)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fmt_metric(run: dict, long: bool = False) -> str:
    """`accuracy 0.9776 (0.135)`: the main metric and, in brackets, its baseline before training."""
    v = run.get("main_value")
    if v is None:
        return "-"
    s = f"{run.get('main_metric') or ''} {v:.4g}"
    if run.get("baseline_value") is not None:
        s += f" (from {run['baseline_value']:.4g})" if long else f" ({run['baseline_value']:.3g})"
    return s


def fmt_count(n: Optional[float]) -> str:
    if n is None:
        return "N/A"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "N/A"
    for unit, div in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def short(s: Optional[str], n: int = 24) -> str:
    s = s or ""
    return s if len(s) <= n else "…" + s[-(n - 1):]


# -- the run history ------------------------------------------------------------------------------


class RunStore:
    """The history as the UI reads and changes it. Safe to call from worker threads:
    each thread gets its own `History` connection."""

    def __init__(self, db_path: Optional[Path] = None):
        self.db_path = db_path
        self._local = threading.local()

    @property
    def h(self):
        h = getattr(self._local, "h", None)
        if h is None:
            from tuitune.history import History

            h = self._local.h = History(self.db_path)
        return h

    def runs(self) -> list[dict[str, Any]]:
        return self.h.list_runs()

    def run(self, run_id: int) -> dict[str, Any]:
        return self.h.get_run(run_id)

    def metrics(self, run_id: int, after_rowid: int = 0) -> list[dict[str, Any]]:
        return self.h.metrics(run_id, after_rowid=after_rowid)

    def evaluations(self, run_id: int) -> list[dict[str, Any]]:
        return self.h.evaluations(run_id)

    def system(self, run_id: int, after_time: int = 0) -> list[dict[str, Any]]:
        return self.h.system(run_id, after_time=after_time)

    def events(self, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
        return self.h.events(run_id, after_id=after_id)

    def log_tail(self, run: dict, lines: int = 200) -> list[str]:
        if not run.get("run_dir"):
            return []
        p = Path(run["run_dir"]) / "engine.log"
        try:
            with open(p, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 32_000))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        # Trainer redraws progress lines with \r: keep the last state of each line.
        out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
        return [ln for ln in out if ln.strip()][-lines:]

    def stop(self, run_id: int) -> None:
        from tuitune import launcher

        launcher.stop_run(self.h, run_id)

    def delete(self, run_id: int) -> None:
        from tuitune import launcher

        launcher.delete_run(self.h, run_id)

    def launch(self, config: dict[str, Any]) -> int:
        from tuitune import launcher
        from tuitune.config import validate_config

        cfg = validate_config(config)
        return launcher.start_run(self.h, cfg)


# -- models -----------------------------------------------------------------------------------------

ENCODERS = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "xlm-roberta",
            "camembert", "mpnet", "modernbert", "ernie"}
DECODERS = {"llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3", "gpt_neox",
            "opt", "falcon", "smollm", "mixtral", "olmo", "granite"}


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
    tasks: list[str] = field(default_factory=list)
    note: str = ""

    def memory(self, batch: int = 16, length: int = 128) -> dict[str, Optional[int]]:
        """Rough training memory (bytes): weights + grads + AdamW states + activations.

        full: fp32 weights, grads and two Adam moments (16 B/param); LoRA: frozen weights (4 B/param)
        plus ~1% trainable; QLoRA: 4-bit weights (~0.55 B/param). Activations ≈ batch·length·hidden·
        layers·34 B (fp32, after Korthikanti et al.), the same for all three.
        """
        if not self.params:
            return {"full": None, "lora": None, "qlora": None}
        p = self.params
        act = batch * length * (self.hidden or 768) * (self.layers or 12) * 34
        return {"full": 16 * p + act, "lora": int(4 * p + 0.01 * p * 16) + act,
                "qlora": int(0.55 * p + 0.01 * p * 16) + act}


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
    a = " ".join(archs).lower()
    if model_type in ENCODERS or "maskedlm" in a or "formaskedlm" in a:
        return ["classification", "mlm"]
    if model_type in DECODERS or "causallm" in a:
        return ["classification", "sft", "dpo"]
    return ["classification"]


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
                             hidden=576, layers=30, vocab=49152, tasks=["classification", "sft", "dpo"],
                             note="a GGUF file: the engine converts it to a model folder on first use")
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


# -- datasets ---------------------------------------------------------------------------------------



@dataclass
class DatasetInfo:
    path: str
    columns: list[str]
    rows: list[dict[str, Any]]  # preview
    total: int
    label_counts: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    token_stats: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def dataset_choices() -> list[tuple[str, str]]:
    return [(f"{a.name}  {a.description}", a.name) for a in demo.ASSETS.values() if a.kind == "dataset"]


def _tokenizer_for(model_path: Optional[str]):
    if not model_path:
        return None
    tj = Path(model_path) / "tokenizer.json"
    if not tj.exists():
        return None
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tj))
    except Exception:
        return None


def token_stats(texts: list[str], max_length: int, model_path: Optional[str] = None,
                sample: int = 500) -> dict[str, Any]:
    """Token lengths of (a sample of) the texts: exact with the model's tokenizer.json
    (`tokenizers`, no torch), else approximated as 1.3 tokens per word."""
    texts = texts[:sample]
    if not texts:
        return {}
    tok = _tokenizer_for(model_path)
    if tok is not None:
        tok.no_truncation()
        tok.no_padding()
        lengths = [len(e.ids) for e in tok.encode_batch(texts)]
        how = "tokenizer"
    else:
        lengths = [int(len(t.split()) * 1.3) + 2 for t in texts]
        how = "approx. 1.3 tokens/word"
    lengths.sort()
    n = len(lengths)
    cut = sum(1 for x in lengths if x > max_length)
    lost = sum(max(0, x - max_length) for x in lengths) / max(1, sum(lengths))
    return {"how": how, "n": n, "mean": sum(lengths) / n, "p50": lengths[n // 2],
            "p95": lengths[min(n - 1, int(n * 0.95))], "max": lengths[-1],
            "truncated_share": cut / n, "tokens_lost": lost, "max_length": max_length}


def inspect_dataset(path: str, text_column: Optional[str] = None, label_column: Optional[str] = None,
                    *, max_length: int = 128, validation_size: float = 0.1, model_path: Optional[str] = None,
                    preview: int = 50, eval_path: Optional[str] = None, test_path: Optional[str] = None,
                    train_split: str = "train") -> DatasetInfo:
    """Columns, preview rows, label counts, split sizes and token lengths, read through the same
    source resolution as the engine (`tuitune.datasources`): demo sets, save_to_disk folders,
    folders with split files, eval_path / test_path."""
    from types import SimpleNamespace

    from tuitune import datasources

    path = (path or "").strip()
    if not path:
        raise TuituneError("type a dataset: a local csv/json/jsonl/parquet/txt file, or demo:bbc-news")
    by_split = datasources.preview_rows(SimpleNamespace(path=path, eval_path=eval_path, test_path=test_path))
    if train_split not in by_split:
        raise TuituneError(f"split '{train_split}' not in dataset: splits are {', '.join(by_split)} (set data.train_split)")
    rows = by_split[train_split]
    if not rows:
        raise TuituneError(f"dataset {path} has no rows")
    columns = list(rows[0].keys())
    info = DatasetInfo(path=path, columns=columns, rows=rows[:preview], total=sum(len(r) for r in by_split.values()))
    if text_column and text_column not in columns:
        raise TuituneError(f"text column {text_column!r} not in dataset: columns are {', '.join(columns)}")
    if label_column and label_column not in columns:
        raise TuituneError(f"label column {label_column!r} not in dataset: columns are {', '.join(columns)}")
    if label_column:
        info.label_counts = dict(Counter(str(r.get(label_column)) for r in rows).most_common())
    validation = next((s for s in ("validation", "valid", "dev") if s in by_split), None)
    n_val = len(by_split[validation]) if validation else int(round(len(rows) * validation_size))
    info.splits = {"train": len(rows) - (0 if validation else n_val), "validation": n_val}
    if "test" in by_split:
        info.splits["test"] = len(by_split["test"])
    if text_column:
        info.token_stats = token_stats([str(r.get(text_column) or "") for r in rows], max_length, model_path)
    return info

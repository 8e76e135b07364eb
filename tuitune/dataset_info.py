"""What a dataset holds before a run reads it: columns, preview rows, label counts, split sizes
and token lengths against `max_length`.

Rows come through `tuitune.datasources`, the source resolution the engine uses (demo sets, folders
split by file names, save_to_disk folders, eval_path / test_path), read with plain Python (json, csv,
pyarrow) plus `tokenizers` (Rust, light) for exact token
lengths when the model folder has a `tokenizer.json`; never torch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuitune import demo
from tuitune.errors import TuituneError

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

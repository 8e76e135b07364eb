"""What a dataset holds before a run reads it: columns, preview rows, label counts, split sizes
and token lengths against `max_length`.

Plain Python (json, csv, pyarrow for parquet) plus `tokenizers` (Rust, light) for exact token
lengths when the model folder has a `tokenizer.json`; never torch.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tuitune import demo
from tuitune.errors import TuituneError

SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


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


def _read_rows(path: str) -> list[dict[str, Any]]:
    """All rows of a demo or local dataset as dicts (the data sizes here are small)."""
    if demo.is_demo(path):
        if path == "demo:bbc-news":
            root = demo.path(path, fetch=False)
            rows = []
            for d in sorted(x for x in root.iterdir() if x.is_dir()):
                for f in sorted(d.glob("*.txt")):
                    rows.append({"text": " ".join(f.read_text(encoding="latin-1").split()), "label": d.name})
            return rows
        if path == "demo:tweets":
            with open(demo.path(path, fetch=False), encoding="latin-1", newline="") as fh:
                return [{"text": (r.get("text") or "").strip(), "label": r["sentiment"].strip()}
                        for r in csv.DictReader(fh) if (r.get("text") or "").strip() and r.get("sentiment")]
        raise TuituneError(f"{path}: preview is not available for this demo set (it still trains)")
    p = Path(path).expanduser()
    if not p.exists():
        if path.startswith((".", "/", "~")) or p.suffix.lower() in SUFFIXES:
            raise TuituneError(f"dataset file {p} does not exist: check the path")
        raise TuituneError(f"{path!r} is not a local file: hub datasets are read when the run starts "
                           "(no preview without hub access)")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
    if not files:
        raise TuituneError(f"folder {p} has no csv/json/jsonl/parquet/txt files")
    rows: list[dict[str, Any]] = []
    for f in files:
        suf = f.suffix.lower()
        try:
            if suf in (".csv", ".tsv"):
                with open(f, encoding="utf-8", newline="") as fh:
                    rows += list(csv.DictReader(fh, delimiter="\t" if suf == ".tsv" else ","))
            elif suf == ".jsonl":
                with open(f, encoding="utf-8") as fh:
                    rows += [json.loads(ln) for ln in fh if ln.strip()]
            elif suf == ".json":
                data = json.loads(f.read_text(encoding="utf-8"))
                if isinstance(data, dict):  # {"col": [...]} or {"data": [...]}
                    lists = [v for v in data.values() if isinstance(v, list)]
                    if all(isinstance(v, list) for v in data.values()):
                        keys = list(data)
                        rows += [dict(zip(keys, vals)) for vals in zip(*data.values())]
                    elif lists:
                        rows += lists[0]
                else:
                    rows += data
            elif suf == ".txt":
                rows += [{"text": ln.rstrip("\n")} for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
            elif suf == ".parquet":
                import pyarrow.parquet as pq

                rows += pq.read_table(f).to_pylist()
        except UnicodeDecodeError:
            raise TuituneError(f"dataset file {f} is not UTF-8: re-save it as UTF-8") from None
        except (ValueError, csv.Error) as err:
            raise TuituneError(f"dataset file {f} cannot be parsed ({str(err).splitlines()[0][:120]})") from None
    if not rows:
        raise TuituneError(f"dataset {p} has no rows")
    return [r if isinstance(r, dict) else {"text": str(r)} for r in rows]


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
                    preview: int = 50) -> DatasetInfo:
    path = (path or "").strip()
    if not path:
        raise TuituneError("type a dataset: a local csv/json/jsonl/parquet/txt file, or demo:bbc-news")
    rows = _read_rows(path)
    columns = list(rows[0].keys())
    info = DatasetInfo(path=path, columns=columns, rows=rows[:preview], total=len(rows))
    if text_column and text_column not in columns:
        raise TuituneError(f"text column {text_column!r} not in dataset: columns are {', '.join(columns)}")
    if label_column and label_column not in columns:
        raise TuituneError(f"label column {label_column!r} not in dataset: columns are {', '.join(columns)}")
    if label_column:
        info.label_counts = dict(Counter(str(r.get(label_column)) for r in rows).most_common())
    n_val = int(round(len(rows) * validation_size))
    info.splits = {"train": len(rows) - n_val, "validation": n_val}
    if text_column:
        info.token_stats = token_stats([str(r.get(text_column) or "") for r in rows], max_length, model_path)
    return info

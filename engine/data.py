"""Loading data: hub datasets, local files and the embedded demo sets, into train/validation/test.

Every failure a user can fix becomes a `TuituneError` naming the fix (missing column, empty data,
not UTF-8, unknown dataset).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from tuitune import demo
from tuitune.config import DataConfig
from tuitune.errors import TuituneError

LOCAL_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                  ".txt": "text", ".text": "text"}


# -- demo datasets -------------------------------------------------------------------------------

def _bbc_news() -> dict[str, list]:
    root = demo.path("demo:bbc-news")
    texts, labels = [], []
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    for i, name in enumerate(names):
        for f in sorted((root / name).glob("*.txt")):
            raw = f.read_text(encoding="latin-1").strip()
            texts.append(" ".join(raw.split()))
            labels.append(name)
    return {"text": texts, "label": labels}


def _tweets() -> dict[str, list]:
    import csv

    path = demo.path("demo:tweets")
    texts, labels = [], []
    with open(path, encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            t = (row.get("text") or "").strip()
            if t and row.get("sentiment"):
                texts.append(t)
                labels.append(row["sentiment"].strip())
    return {"text": texts, "label": labels}


def _chat_turns() -> list[tuple[str, str, str]]:
    """(category, question, answer) from the ChatterBot corpus YAML files."""
    import yaml

    root = demo.path("demo:chat")
    out = []
    for f in sorted(root.glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        cat = f.stem
        for conv in data.get("conversations") or []:
            conv = [str(x).strip() for x in conv if x is not None and not isinstance(x, (dict, list))]
            for q, a in zip(conv, conv[1:]):
                if q and a:
                    out.append((cat, q, a))
    return out


def _chat() -> dict[str, list]:
    return {"messages": [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                         for _, q, a in _chat_turns()]}


def _chat_pairs() -> dict[str, list]:
    import random

    turns = _chat_turns()
    rng = random.Random(0)
    prompts, chosen, rejected = [], [], []
    for cat, q, a in turns:
        for _ in range(10):
            other = turns[rng.randrange(len(turns))]
            if other[0] != cat:
                break
        prompts.append([{"role": "user", "content": q}])
        chosen.append([{"role": "assistant", "content": a}])
        rejected.append([{"role": "assistant", "content": other[2]}])
    return {"prompt": prompts, "chosen": chosen, "rejected": rejected}


DEMO_DATASETS = {"demo:bbc-news": _bbc_news, "demo:tweets": _tweets, "demo:chat": _chat,
                 "demo:chat-pairs": _chat_pairs}


# -- loading ---------------------------------------------------------------------------------------

def _local_files(path: Path) -> tuple[str, list[str]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_BUILDERS)
        if not files:
            raise TuituneError(f"folder {path} has no csv/json/jsonl/parquet/txt files")
    else:
        files = [path]
    kinds = {LOCAL_BUILDERS.get(p.suffix.lower()) for p in files}
    if None in kinds:
        raise TuituneError(f"{path}: unknown file type {path.suffix!r}: use csv, json, jsonl, parquet or txt")
    if len(kinds) > 1:
        raise TuituneError(f"folder {path} mixes file types ({', '.join(sorted(kinds))}): keep one kind")
    for p in files:
        if p.stat().st_size == 0:
            raise TuituneError(f"dataset file {p} is empty")
        if LOCAL_BUILDERS[p.suffix.lower()] != "parquet":
            with open(p, "rb") as fh:
                head = fh.read(1 << 20)
            try:
                head.decode("utf-8")
            except UnicodeDecodeError as err:
                if err.start < len(head) - 4:  # not just a character cut at the 1 MiB boundary
                    raise TuituneError(
                        f"dataset file {p} is not UTF-8 (byte {err.start}): re-save it as UTF-8 "
                        f"(e.g. iconv -f latin1 -t utf-8)") from None
    return kinds.pop(), [str(p) for p in files]


def load_raw(cfg: DataConfig):
    """A `DatasetDict` as the source gives it (splits untouched)."""
    import datasets

    datasets.disable_progress_bars()
    src = cfg.path
    if demo.is_demo(src):
        if src not in DEMO_DATASETS:
            known = ", ".join(k for k, a in demo.ASSETS.items() if a.kind == "dataset")
            raise TuituneError(f"unknown demo dataset {src!r}: known are {known}")
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(DEMO_DATASETS[src]())})
    path = Path(src).expanduser()
    looks_local = path.exists() or src.startswith((".", "/", "~")) or path.suffix.lower() in LOCAL_BUILDERS
    try:
        if looks_local:
            if not path.exists():
                raise TuituneError(f"dataset path {path} does not exist")
            builder, files = _local_files(path)
            kwargs: dict[str, Any] = {}
            if builder == "csv" and any(f.endswith(".tsv") for f in files):
                kwargs["delimiter"] = "\t"
            return datasets.load_dataset(builder, data_files={cfg.train_split: files}, **kwargs)
        return datasets.load_dataset(src, cfg.name)
    except TuituneError:
        raise
    except FileNotFoundError as err:
        raise TuituneError(f"dataset {src!r} not found on the hub or on disk: check the name ({err})") from None
    except (ConnectionError, OSError) as err:
        if "offline" in str(err).lower() or "connect" in str(err).lower() or "resolve" in str(err).lower():
            raise TuituneError(f"dataset {src!r} cannot be fetched (no hub access?): use a local file or demo: dataset") from None
        raise TuituneError(f"dataset {src!r}: {str(err).splitlines()[0]}") from None
    except ValueError as err:
        raise TuituneError(f"dataset {src!r}: {str(err).splitlines()[0]}") from None
    except Exception as err:  # pyarrow parse errors, datasets' own errors
        name = type(err).__name__
        if "DatasetNotFound" in name or "Repository" in name:
            raise TuituneError(f"dataset {src!r} not found on the hub: check the name, or give a local file") from None
        raise TuituneError(f"dataset {src!r} could not be read ({name}: {str(err).splitlines()[0][:200]})") from None


def require_columns(ds, columns: list[tuple[str, Optional[str]]]) -> None:
    have = list(ds.column_names)
    for role, col in columns:
        if col and col not in have:
            raise TuituneError(
                f"{role} column '{col}' not in dataset: columns are {', '.join(have)} "
                f"(set data.{role}_column)"
            )


def splits(raw, cfg: DataConfig, seed: int):
    """train / validation (carved, seeded, when the source has none) / optional test."""
    import datasets

    if cfg.train_split not in raw:
        raise TuituneError(f"split '{cfg.train_split}' not in dataset: splits are {', '.join(raw)} (set data.train_split)")
    train = raw[cfg.train_split]
    if len(train) == 0:
        raise TuituneError(f"dataset {cfg.path} split '{cfg.train_split}' is empty")
    eval_split = cfg.eval_split or next((s for s in ("validation", "valid", "dev") if s in raw), None)
    if cfg.eval_split and cfg.eval_split not in raw:
        raise TuituneError(f"split '{cfg.eval_split}' not in dataset: splits are {', '.join(raw)} (set data.eval_split)")
    if eval_split:
        validation = raw[eval_split]
    else:
        if len(train) < 2:
            raise TuituneError(f"dataset {cfg.path} has {len(train)} row: need at least 2 to carve a validation split")
        parts = train.train_test_split(test_size=cfg.validation_size, seed=seed, shuffle=True)
        train, validation = parts["train"], parts["test"]
    test = None
    if cfg.test_split:
        if cfg.test_split not in raw:
            raise TuituneError(f"split '{cfg.test_split}' not in dataset: splits are {', '.join(raw)} (set data.test_split)")
        test = raw[cfg.test_split]
    if cfg.max_train_samples:
        train = train.shuffle(seed=seed).select(range(min(cfg.max_train_samples, len(train))))
    if cfg.max_eval_samples:
        validation = validation.select(range(min(cfg.max_eval_samples, len(validation))))
        if test is not None:
            test = test.select(range(min(cfg.max_eval_samples, len(test))))
    out = {"train": train, "validation": validation}
    if test is not None:
        out["test"] = test
    return datasets.DatasetDict(out)


def label_names(ds, column: str) -> tuple[list[str], Any]:
    """Label names, and the dataset with labels as integer ids in `column`.

    Strings become ids in sorted order; a ClassLabel keeps its names; integers must be 0..N-1.
    """
    import datasets

    feature = ds["train"].features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), ds
    values = set()
    for split in ds.values():
        values.update(split[column])
    if None in values:
        raise TuituneError(f"label column '{column}' has empty values: remove those rows or fill them")
    if all(isinstance(v, bool) or isinstance(v, int) for v in values):
        ints = sorted(int(v) for v in values)
        if ints[0] < 0:
            raise TuituneError(f"labels out of range in '{column}': found {ints[0]}; labels must be 0..N-1 or names")
        if len(ints) > 1000:
            raise TuituneError(f"label column '{column}' has {len(ints)} distinct values: is it really the label?")
        names = [str(i) for i in range(ints[-1] + 1)]
        return names, ds
    if all(isinstance(v, float) for v in values):
        raise TuituneError(f"label column '{column}' holds decimals: classification needs names or integers 0..N-1")
    names = sorted(str(v) for v in values)
    index = {n: i for i, n in enumerate(names)}
    ds = ds.map(lambda b: {column: [index[str(v)] for v in b[column]]}, batched=True,
                features=None, desc=None)
    ds = ds.cast_column(column, datasets.ClassLabel(names=names))
    return names, ds


def num_proc() -> Optional[int]:
    n = os.cpu_count() or 1
    return None if n <= 2 else min(8, n // 2)

"""Loading data: hub datasets, local files and folders, save_to_disk folders and the embedded demo
sets, into train/validation/test. Where rows come from is resolved in `tuitune.datasources` (shared
with the UI's preview); this module reads them with `datasets`.

Every failure a user can fix becomes a `TuituneError` naming the fix (missing column, empty data,
not UTF-8, unknown dataset).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from tuitune import datasources, demo
from tuitune.config import DataConfig
from tuitune.errors import TuituneError

def cache_dir() -> Path:
    """datasets' cache (Arrow files and the fingerprinted results of map/filter) under the tuitune home:
    a second run on the same data, tokenizer and max_length reuses the tokenized files."""
    from tuitune import paths

    p = paths.cache_dir() / "datasets"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _demo(src: str):
    """A demo set, saved once as Arrow files in the cache so map() results are cached like any file's."""
    import datasets

    reader = datasources.demo_reader(src)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{src[5:]}-{demo.asset(src).package}")
    target = cache_dir() / "demo" / tag
    if not datasources.is_saved_dataset(target):
        tmp = target.with_name(f"{tag}.tmp-{os.getpid()}")
        datasets.Dataset.from_dict(reader()).save_to_disk(str(tmp))
        try:
            tmp.rename(target)
        except OSError:  # another process saved it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.DatasetDict({"train": datasets.load_from_disk(str(target))})


def _read(source: datasources.Source):
    import datasets

    if source.kind == "demo":
        return _demo(source.path)
    if source.kind == "saved":
        loaded = datasets.load_from_disk(source.path)
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    if source.kind == "files":
        files = {split: [str(p) for p in fs] for split, fs in source.splits.items()}
        kwargs: dict[str, Any] = {}
        if source.builder == "csv" and any(f.endswith(".tsv") for fs in files.values() for f in fs):
            kwargs["delimiter"] = "\t"
        return datasets.load_dataset(source.builder, data_files=files, cache_dir=str(cache_dir()), **kwargs)
    return None


def load_raw(cfg: DataConfig):
    """A `DatasetDict` as the source gives it (its own splits), plus `validation` / `test` from
    `data.eval_path` / `data.test_path` (which take precedence over splits of the same name)."""
    import datasets

    datasets.disable_progress_bars()
    src = cfg.path
    try:
        sources = datasources.resolve(cfg)
        main = sources[""]
        raw = _read(main) if main.kind != "hub" else datasets.load_dataset(src, cfg.name)
        for split, extra in sources.items():
            if split:
                got = _read(extra)
                raw[split] = got[split] if split in got else (got["train"] if "train" in got else next(iter(got.values())))
        return raw
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
    test_split = cfg.test_split or ("test" if cfg.test_path else None)
    if test_split:
        if test_split not in raw:
            raise TuituneError(f"split '{test_split}' not in dataset: splits are {', '.join(raw)} (set data.test_split)")
        test = raw[test_split]
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

    Strings become ids in sorted order; a ClassLabel keeps its names; integers 0..N-1 stay as they
    are, and other integers (review stars 1..5) become ids in numeric order, named by their value.
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
            raise TuituneError(f"labels out of range in '{column}': found {ints[0]}; labels must be integers >= 0 or names")
        if len(ints) > 1000:
            raise TuituneError(f"label column '{column}' has {len(ints)} distinct values: is it really the label?")
        if ints == list(range(len(ints))):
            return [str(i) for i in ints], ds
        names = [str(i) for i in ints]
        index = {v: i for i, v in enumerate(ints)}
        ds = ds.map(lambda b: {column: [index[int(v)] for v in b[column]]}, batched=True)
        ds = ds.cast_column(column, datasets.ClassLabel(names=names))
        return names, ds
    if all(isinstance(v, float) for v in values):
        raise TuituneError(f"label column '{column}' holds decimals: classification needs names or integers")
    names = sorted(str(v) for v in values)
    index = {n: i for i, n in enumerate(names)}
    ds = ds.map(lambda b: {column: [index[str(v)] for v in b[column]]}, batched=True,
                features=None, desc=None)
    ds = ds.cast_column(column, datasets.ClassLabel(names=names))
    return names, ds


def num_proc() -> Optional[int]:
    n = os.cpu_count() or 1
    return None if n <= 2 else min(8, n // 2)

"""Where a dataset's rows come from, resolved without `datasets` (the UI uses this too).

One resolution for the engine (engine/data.py, which then reads with `datasets`) and the dataset
preview (which reads the same files with csv/json/pyarrow):

- `demo:NAME` → a reader returning columns (`DEMO_DATASETS`);
- a `datasets.save_to_disk` folder (a Dataset or a DatasetDict) → read with `load_from_disk`;
- a local file → split `train`; a local folder → splits from file and folder names, with the
  keywords and separators `datasets.load_dataset(folder)` uses (train/training, validation/valid/
  dev/val, test/testing/eval/evaluation; `data/{split}-00000-of-00001.*` shards);
- `data.eval_path` / `data.test_path` → extra `validation` / `test` splits from their own files;
- anything else → a hub dataset name.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tuitune import demo
from tuitune.errors import TuituneError

LOCAL_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                  ".txt": "text", ".text": "text"}

# As datasets/data_files.py (SPLIT_KEYWORDS, NON_WORDS_CHARS), in its order of precedence.
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9]"
_SHARDED = re.compile(r"^(?P<split>\w+)-\d{5}-of-\d{5}.*\..+$")


# -- demo datasets -------------------------------------------------------------------------------

def _bbc_news() -> dict[str, list]:
    root = demo.path("demo:bbc-news")
    texts, labels = [], []
    for name in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(" ".join(f.read_text(encoding="latin-1").split()))
            labels.append(name)
    return {"text": texts, "label": labels}


def _tweets() -> dict[str, list]:
    texts, labels = [], []
    with open(demo.path("demo:tweets"), encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            t = (row.get("text") or "").strip()
            if t and row.get("sentiment"):
                texts.append(t)
                labels.append(row["sentiment"].strip())
    return {"text": texts, "label": labels}


def _chat_turns() -> list[tuple[str, str, str]]:
    """(category, question, answer) from the ChatterBot corpus YAML files."""
    import yaml

    out = []
    for f in sorted(demo.path("demo:chat").glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            conv = [str(x).strip() for x in conv if x is not None and not isinstance(x, (dict, list))]
            for q, a in zip(conv, conv[1:]):
                if q and a:
                    out.append((f.stem, q, a))
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


DEMO_DATASETS: dict[str, Callable[[], dict[str, list]]] = {
    "demo:bbc-news": _bbc_news, "demo:tweets": _tweets, "demo:chat": _chat, "demo:chat-pairs": _chat_pairs}


def demo_reader(name: str) -> Callable[[], dict[str, list]]:
    if name not in DEMO_DATASETS:
        known = ", ".join(k for k, a in demo.ASSETS.items() if a.kind == "dataset")
        raise TuituneError(f"unknown demo dataset {name!r}: known are {known}")
    return DEMO_DATASETS[name]


# -- local files and folders -----------------------------------------------------------------------

def _keyword_in(name: str, keyword: str, *, whole: bool) -> bool:
    """`keyword` delimited by separators in `name` (a file name: followed by a separator; a folder
    name (`whole`): the name itself, or followed/preceded by a separator)."""
    tail = rf"(?:{_SEP}.*)?" if whole else rf"{_SEP}.*"
    return re.fullmatch(rf"(?:.*{_SEP})?{re.escape(keyword)}{tail}", name) is not None


def split_of(rel: Path, *, by: str) -> Optional[str]:
    """The split a file (path relative to the folder) belongs to, by folder names or by file name."""
    names = list(rel.parts[:-1]) if by == "dir" else [rel.name]
    for split, keywords in SPLIT_KEYWORDS.items():
        if any(_keyword_in(n, k, whole=by == "dir") for n in names for k in keywords):
            return split
    return None


def folder_splits(folder: Path) -> dict[str, list[Path]]:
    """{split: files} the way `datasets.load_dataset(folder)` assigns them: sharded `data/` files,
    else split keywords in folder names, else in file names, else everything is `train`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_BUILDERS
                   and not any(part.startswith((".", "__")) for part in p.relative_to(folder).parts))
    if not files:
        raise TuituneError(f"folder {folder} has no csv/json/jsonl/parquet/txt files")
    sharded: dict[str, list[Path]] = {}
    for p in files:
        rel = p.relative_to(folder)
        m = _SHARDED.match(rel.name) if rel.parts[0] == "data" and len(rel.parts) == 2 else None
        if m:
            sharded.setdefault(m["split"], []).append(p)
    if sharded:
        return sharded
    for by in ("dir", "file"):
        out: dict[str, list[Path]] = {}
        for p in files:
            split = split_of(p.relative_to(folder), by=by)
            if split:
                out.setdefault(split, []).append(p)
        if out:
            return {s: out[s] for s in SPLIT_KEYWORDS if s in out}
    return {"train": files}


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def looks_local(src: str) -> bool:
    path = Path(src).expanduser()
    return path.exists() or src.startswith((".", "/", "~")) or path.suffix.lower() in LOCAL_BUILDERS


def check_files(files: list[Path], where: Path) -> str:
    """The one builder the files share (csv/json/parquet/text); a one-line error when they cannot be read."""
    kinds = {LOCAL_BUILDERS.get(p.suffix.lower()) for p in files}
    if None in kinds:
        bad = next(p for p in files if p.suffix.lower() not in LOCAL_BUILDERS)
        raise TuituneError(f"{bad}: unknown file type {bad.suffix!r}: use csv, json, jsonl, parquet or txt")
    if len(kinds) > 1:
        raise TuituneError(f"{where} mixes file types ({', '.join(sorted(kinds))}): keep one kind")
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
    return kinds.pop()


@dataclass
class Source:
    """One place rows come from: `kind` is demo | saved | files | hub."""

    kind: str
    path: str
    splits: dict[str, list[Path]] = field(default_factory=dict)  # files: {split: files}
    builder: str = ""  # files: csv | json | parquet | text


def resolve_one(src: str) -> Source:
    src = (src or "").strip()
    if demo.is_demo(src):
        demo_reader(src)
        return Source("demo", src)
    if not looks_local(src):
        return Source("hub", src)
    path = Path(src).expanduser()
    if not path.exists():
        raise TuituneError(f"dataset path {path} does not exist: check the path")
    if is_saved_dataset(path):
        return Source("saved", str(path))
    splits = folder_splits(path) if path.is_dir() else {"train": [path]}
    builder = check_files([p for fs in splits.values() for p in fs], path)
    return Source("files", str(path), splits, builder)


def resolve(data) -> dict[str, Source]:
    """The sources of a `DataConfig` (or anything with path / eval_path / test_path): the main one
    under "", and the separate validation and test files under their split names."""
    out = {"": resolve_one(data.path)}
    for split, extra in (("validation", getattr(data, "eval_path", None)), ("test", getattr(data, "test_path", None))):
        if extra:
            s = resolve_one(extra)
            if s.kind in ("hub", "demo"):
                raise TuituneError(f"data.{'eval' if split == 'validation' else 'test'}_path must be a local "
                                   f"file or folder, got {extra!r}")
            out[split] = s
    return out


# -- rows for the preview (no datasets, no torch) --------------------------------------------------

def _read_file(f: Path) -> list[dict[str, Any]]:
    suf = f.suffix.lower()
    try:
        if suf in (".csv", ".tsv"):
            with open(f, encoding="utf-8", newline="") as fh:
                return list(csv.DictReader(fh, delimiter="\t" if suf == ".tsv" else ","))
        if suf == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                return [json.loads(ln) for ln in fh if ln.strip()]
        if suf == ".json":
            data = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {"col": [...]} or {"data": [...]}
                if all(isinstance(v, list) for v in data.values()):
                    return [dict(zip(data, vals)) for vals in zip(*data.values())]
                lists = [v for v in data.values() if isinstance(v, list)]
                return lists[0] if lists else []
            return data
        if suf in (".txt", ".text"):
            return [{"text": ln} for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if suf == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(f).to_pylist()
    except UnicodeDecodeError:
        raise TuituneError(f"dataset file {f} is not UTF-8: re-save it as UTF-8") from None
    except (ValueError, csv.Error) as err:
        raise TuituneError(f"dataset file {f} cannot be parsed ({str(err).splitlines()[0][:120]})") from None
    return []


def _read_saved(path: Path) -> dict[str, list[dict[str, Any]]]:
    """A save_to_disk folder's rows, read from its Arrow stream files with pyarrow."""
    import pyarrow as pa

    def one(d: Path) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for f in sorted(d.glob("data-*.arrow")):
            with pa.memory_map(str(f)) as src:
                rows += pa.ipc.open_stream(src).read_all().to_pylist()
        return rows

    if (path / "dataset_dict.json").is_file():
        names = json.loads((path / "dataset_dict.json").read_text()).get("splits") or []
        return {n: one(path / n) for n in names}
    return {"train": one(path)}


def read_rows(source: Source) -> dict[str, list[dict[str, Any]]]:
    """{split: rows} of a demo, saved or local source (the preview's data sizes are small)."""
    if source.kind == "hub":
        raise TuituneError(f"{source.path!r} is not a local file: hub datasets are read when the run starts "
                           "(no preview without hub access)")
    if source.kind == "demo":
        cols = demo_reader(source.path)()
        return {"train": [dict(zip(cols, vals)) for vals in zip(*cols.values())]}
    if source.kind == "saved":
        return _read_saved(Path(source.path))
    out: dict[str, list[dict[str, Any]]] = {}
    for split, files in source.splits.items():
        rows: list[dict[str, Any]] = []
        for f in files:
            rows += _read_file(f)
        out[split] = [r if isinstance(r, dict) else {"text": str(r)} for r in rows]
    return out


def preview_rows(data) -> dict[str, list[dict[str, Any]]]:
    """{split: rows} for the preview, resolved as the engine resolves a `DataConfig`-like object."""
    sources = resolve(data)
    out = read_rows(sources[""])
    for split, s in sources.items():
        if split:
            rows = read_rows(s)
            out[split] = next(iter(rows.values())) if len(rows) == 1 else rows.get(split, rows.get("train", []))
    return out

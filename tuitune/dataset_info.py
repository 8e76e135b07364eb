"""What a dataset holds before a run reads it: columns, preview rows, label counts, split sizes
and token lengths against `max_length`.

Rows come through `tuitune.datasources`, the source resolution the engine uses (demo sets, folders
split by file names, save_to_disk folders, eval_path / test_path), read with plain Python (json, csv,
pyarrow) plus `tokenizers` (Rust, light) for exact token
lengths when the model folder has a `tokenizer.json`; never torch.
"""

from __future__ import annotations

import math
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


# -- how long a run's batches really are (the memory estimate's sequence length) -----------------

@dataclass
class BatchLength:
    """The padded length of a run's batches, from the data's token lengths: a batch is padded to its
    longest row (truncated at max_length), so memory follows the longest row a batch draws, not
    max_length. `length` (what the memory estimate uses) is the typical (median) longest row
    among all the rows the run draws, since the run's peak memory is its longest batch's."""

    length: int  # typical padded length of the run's longest batch (≤ max_length, padding multiple included)
    batch: int  # typical padded length of a single batch
    mean: float  # mean row length, truncated at max_length (DPO: the longer of chosen / rejected)
    longest: int  # the longest row measured, truncated at max_length
    rows: int  # rows measured
    drawn: int  # rows the run draws (steps × batch × accumulation), at most all of them
    max_length: int
    how: str  # "tokenizer" (exact) or the approximation used


def _get(data: Any, key: str, default: Any = None) -> Any:
    value = data.get(key, default) if isinstance(data, dict) else getattr(data, key, default)
    return default if value is None else value


def chat_template(model_path: Optional[str]):
    """A render(messages, add_generation_prompt) for the model folder's chat template
    (chat_template.jinja or tokenizer_config.json), with jinja2 as transformers renders it; None
    without one."""
    if not model_path:
        return None
    folder = Path(model_path)
    source, cfg = None, {}
    try:
        if (folder / "tokenizer_config.json").exists():
            import json

            cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
            source = cfg.get("chat_template")
            if isinstance(source, list):  # named templates: the default one
                source = next((t.get("template") for t in source if t.get("name") == "default"), None)
        if (folder / "chat_template.jinja").exists():
            source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        if not source:
            return None
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        template = env.from_string(source)
    except Exception:  # unreadable config, a template jinja2 cannot parse: fall back to the approximation
        return None

    def token(name: str) -> str:
        t = cfg.get(name)
        return str(t.get("content", "")) if isinstance(t, dict) else str(t or "")

    def raise_exception(msg):
        raise ValueError(msg)

    specials = {"bos_token": token("bos_token"), "eos_token": token("eos_token"), "raise_exception": raise_exception}

    def render(messages: list, add_generation_prompt: bool = False) -> str:
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt, **specials)

    return render


def _as_messages(value: Any, role: str) -> list:
    return value if isinstance(value, list) else [{"role": role, "content": str(value or "")}]


def _texts_per_row(rows: list[dict[str, Any]], task: str, data: Any, render) -> list[list[Any]]:
    """Per row, the sequences a run tokenizes for it (DPO: two), each a string, a (text, pair)
    tuple, or, as ("chat", text), a rendered conversation (no special tokens added)."""
    out = []
    if task == "dpo":
        pc, cc, rc = (_get(data, k, d) for k, d in (("prompt_column", "prompt"), ("chosen_column", "chosen"),
                                                     ("rejected_column", "rejected")))
        for r in rows:
            p, c, rj = r.get(pc), r.get(cc), r.get(rc)
            if isinstance(c, list) and render is not None:
                out.append([("chat", render(_as_messages(p, "user") + c)),
                            ("chat", render(_as_messages(p, "user") + _as_messages(rj, "assistant")))])
            else:
                out.append([_flatten(p) + _flatten(c), _flatten(p) + _flatten(rj)])
        return out
    if task == "sft":
        mc = _get(data, "messages_column") or ("messages" if rows and "messages" in rows[0] else None)
        pc, cc = _get(data, "prompt_column", "prompt"), _get(data, "completion_column", "completion")
        for r in rows:
            conv = r.get(mc) if mc else None
            if conv is None and isinstance(r.get(pc), list):
                conv = r.get(pc) + _as_messages(r.get(cc), "assistant")
            if isinstance(conv, list):
                out.append([("chat", render(conv)) if render is not None else _flatten(conv)])
            else:
                out.append([_flatten(r.get(pc)) + _flatten(r.get(cc))])
        return out
    tc, pair = _get(data, "text_column", "text"), _get(data, "text_pair_column")
    for r in rows:
        text = str(r.get(tc) or "")
        out.append([(text, str(r.get(pair) or "")) if pair else text])
    return out


def _flatten(value: Any) -> str:
    """Plain text of a string or a list of messages (the approximation without a chat template)."""
    if isinstance(value, list):
        return " ".join(f"{m.get('role', '')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
                        for m in value) + " "
    return str(value or "")


APPROX_TOKENS_PER_WORD = 1.3


def _token_counts(seqs: list[Any], tok) -> list[int]:
    if tok is None:
        def approx(s: Any) -> int:
            text = s[1] if isinstance(s, tuple) and s[0] == "chat" else " ".join(s) if isinstance(s, tuple) else s
            return int(len(text.split()) * APPROX_TOKENS_PER_WORD) + 2

        return [approx(s) for s in seqs]
    chat = [i for i, s in enumerate(seqs) if isinstance(s, tuple) and s[0] == "chat"]
    plain = [i for i in range(len(seqs)) if i not in set(chat)]
    out = [0] * len(seqs)
    if chat:  # a rendered template carries its own special tokens
        for i, e in zip(chat, tok.encode_batch([seqs[i][1] for i in chat], add_special_tokens=False)):
            out[i] = len(e.ids)
    if plain:
        for i, e in zip(plain, tok.encode_batch([seqs[i] for i in plain])):
            out[i] = len(e.ids)
    return out


def typical_longest(lengths: list[int], draws: int) -> int:
    """The median longest row of `draws` rows drawn at random from rows of these lengths (all of
    them: the longest): the smallest length x with P(longest ≤ x) = F(x)^draws ≥ ½, i.e. the
    ½^(1/draws) quantile. The median, not the mean: one long row in a thousand pulls the mean
    longest of a batch up while most batches never meet it."""
    xs = sorted(lengths)
    n = len(xs)
    if not n:
        return 0
    if draws >= n:
        return xs[-1]
    return xs[max(1, math.ceil(n * 0.5 ** (1 / draws) - 1e-9)) - 1]


def run_draws(training: Any, n_train: int, batch: int) -> int:
    """How many training rows a run draws: max_steps × batch × accumulation, or its epochs' worth."""
    accum = int(_get(training, "gradient_accumulation_steps", 1))
    steps = int(_get(training, "max_steps", -1))
    if steps > 0:
        return steps * batch * accum
    return int(math.ceil(float(_get(training, "num_train_epochs", 1.0)) * n_train))


def batch_length(data: Any, task: str, batch: int, *, training: Any = None, model_path: Optional[str] = None,
                 pad_multiple: int = 1, sample: int = 2000, seed: int = 0) -> Optional[BatchLength]:
    """The padded length of the run's batches for this data (a DataConfig or the wizard's dict),
    from the token lengths of (a sample of) its training rows: exact with the model folder's
    tokenizer.json and chat template, else approximated. None when the rows cannot be read here (a
    hub dataset, a missing file): the caller falls back to max_length."""
    import random
    from types import SimpleNamespace

    from tuitune import datasources

    path = str(_get(data, "path", "") or "").strip()
    if not path:
        return None
    try:
        by_split = datasources.preview_rows(SimpleNamespace(path=path, eval_path=_get(data, "eval_path"),
                                                            test_path=_get(data, "test_path")))
    except (TuituneError, OSError, ValueError):
        return None
    rows = by_split.get(_get(data, "train_split", "train")) or []
    if not rows:
        return None
    max_length = int(_get(data, "max_length", 128))
    n_total = len(rows)
    has_validation = any(s in by_split for s in ("validation", "valid", "dev")) or _get(data, "eval_split")
    held_out = 0 if has_validation else int(round(n_total * float(_get(data, "validation_size", 0.1))))
    n_train = n_total - held_out
    if _get(data, "max_train_samples"):
        n_train = min(n_train, int(_get(data, "max_train_samples")))
    if len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    render = chat_template(model_path)
    tok = _tokenizer_for(model_path)
    try:
        per_row = _texts_per_row(rows, task, data, render)
    except Exception:  # a template that rejects these messages (roles it does not know): approximate
        per_row, render = _texts_per_row(rows, task, data, None), None
    flat = [s for seqs in per_row for s in seqs]
    if tok is not None:
        tok.no_truncation()
        tok.no_padding()
    counts = iter(_token_counts(flat, tok))

    def padded(x: int) -> int:
        return -(-min(x, max_length) // pad_multiple) * pad_multiple

    raw = [max(min(next(counts), max_length) for _ in seqs) for seqs in per_row]  # truncated at max_length
    lengths = [padded(x) for x in raw]
    packed = bool(_get(data, "packing", False)) and task == "sft"
    drawn = min(n_train, run_draws(training or {}, n_train, batch)) if n_train > 0 else batch
    how = "tokenizer" if tok is not None else f"approx. {APPROX_TOKENS_PER_WORD} tokens/word"
    if tok is not None and task in ("sft", "dpo") and render is None and any(
            isinstance(s, list) for r in rows[:5] for s in r.values()):
        how = "tokenizer, no chat template"
    longest_batch = typical_longest(lengths, max(batch, drawn))
    one_batch = typical_longest(lengths, batch)
    if packed:  # packed rows are max_length long
        longest_batch = one_batch = max_length
    return BatchLength(length=int(longest_batch), batch=int(one_batch),
                       mean=sum(raw) / len(raw), longest=max(lengths),
                       rows=len(lengths), drawn=drawn, max_length=max_length, how=how)

"""Shared fixtures: an isolated TUITUNE_HOME per test, and tiny real models built offline.

Tiny models use the real all-MiniLM-L6-v2 tokenizer (from the demo package) on a 2-layer,
32-wide BERT built from a config, so a few training steps take well under a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def tuitune_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT (masked-LM weights) with the real MiniLM tokenizer, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from tuitune import demo

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(demo.path("demo:minilm")))
    assert tok.convert_tokens_to_ids("movie") != tok.unk_token_id  # the known [UNK] trap
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """A small, learnable 3-class sentiment dataset as a CSV file."""
    import random

    rng = random.Random(0)
    words = {
        "positive": ["great", "wonderful", "excellent", "love", "happy", "best"],
        "negative": ["awful", "terrible", "hate", "worst", "bad", "boring"],
        "neutral": ["table", "chair", "window", "paper", "street", "train"],
    }
    rows = ["text,label"]
    for i in range(240):
        label = list(words)[i % 3]
        w = rng.sample(words[label], 3)
        rows.append(f"the film was {w[0]} and {w[1]} really {w[2]},{label}")
    out = tmp_path_factory.mktemp("data") / "reviews.csv"
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def tuitune_cmd() -> list[str]:
    """The real entry point, as installed in this environment."""
    exe = Path(sys.executable).parent / "tuitune"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tuitune.cli"]


def tiny_config(model_path: Path, data_path: Path, /, **sections) -> dict:
    """A config dict for a few CPU steps on the tiny model; sections override parts."""
    cfg = {
        "name": "tiny",
        "task": "classification",
        "model": {"name_or_path": str(model_path)},
        "data": {"path": str(data_path), "max_length": 32},
        "method": {"name": "full"},
        "training": {"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 5e-3,
                     "logging_steps": 1, "eval_steps": 3, "use_cpu": True, "save_total_limit": 1},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {})
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def execute_run(cfg: dict, *, resume_id: int | None = None):
    """Create a run row and execute the engine's Run in this process. Returns (run_id, exit code)."""
    import signal

    from tuitune.engine.runner import Run
    from tuitune import paths
    from tuitune.config import validate_config
    from tuitune.history import History

    h = History()
    if resume_id is None:
        run_id = h.create_run(validate_config(cfg).model_dump(mode="json"), run_dir_for=paths.run_dir)
    else:
        run_id = resume_id
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = Run(run_id, resume=resume_id is not None, history=h).execute()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    return run_id, code


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama built from SmolLM2's config, with SmolLM2's real tokenizer and chat
    template (read from the GGUF file the demo package ships). ~3M parameters, mostly embeddings."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuitune.engine import gguf_demo

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = gguf_demo.load_gguf_tokenizer()
    assert tok.chat_template and tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id
    cfg = gguf_demo.load_gguf_config()
    cfg.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, max_position_embeddings=512))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    _pretrain_a_little(model, tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _pretrain_a_little(model, tok, steps: int = 30) -> None:
    """A few full steps on chat text, so the tiny model's outputs depend on its input: a random
    tiny model predicts a near-uniform distribution whatever adapters do, and no loss could fall."""
    import torch

    from tuitune.datasources import _chat

    convs = _chat()["messages"][:steps * 8]
    texts = [tok.apply_chat_template(c, tokenize=False) for c in convs]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for i in range(steps):
        batch = tok(texts[i * 8:(i + 1) * 8], return_tensors="pt", padding=True, truncation=True, max_length=48)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def run_in_process(config: dict) -> int:
    """Record a run in the (isolated) history and execute it here, as the engine process would."""
    from tuitune.engine.runner import Run
    from tuitune import paths
    from tuitune.config import validate_config
    from tuitune.history import History

    cfg = validate_config(config)
    h = History()
    run_id = h.create_run(cfg.model_dump(mode="json"), run_dir_for=paths.run_dir)
    paths.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    code = Run(run_id, history=h).execute()
    run = h.get_run(run_id)
    assert code == 0 and run["status"] == "completed", run.get("error")
    return run_id

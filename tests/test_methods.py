"""Every fine-tuning method, trained a few steps on a tiny model through the real engine.

Each case checks: the loss is finite and falls (final eval against the baseline eval), only the
intended parameters changed (BitFit: biases and the new head; prompt tuning: the prompt
embeddings; LoRA: lora_ weights and the head; ...), the run recorded trainable/total parameters,
and the saved result reloads and predicts. Quantized cases (QLoRA NF4/FP4, 8-bit + LoRA) run on
the CPU through bitsandbytes.
"""

from __future__ import annotations

import math
import re

import pytest
from conftest import run_in_process, tiny_config

HEAD = r"(classifier|pooler|modules_to_save)"

# id: (model, task, method section, quantization section, learning rate, allowed-changed regex, must-change regex)
CASES = {
    "full": ("bert", "classification", {"name": "full"}, None, 5e-3, r".", r"embeddings\.word_embeddings"),
    "last_layer": ("bert", "classification", {"name": "last_layer"}, None, 5e-3, HEAD, r"classifier"),
    "freeze_layers": ("bert", "classification", {"name": "freeze_layers", "freeze_layers": 1}, None, 5e-3,
                      r"(layer\.1\.|classifier|pooler)", r"layer\.1\."),
    "bitfit": ("bert", "classification", {"name": "bitfit"}, None, 5e-3, rf"(\.bias$|{HEAD})", r"layer\.0\..*\.bias"),
    "prompt_tuning": ("bert", "classification", {"name": "prompt_tuning", "num_virtual_tokens": 4}, None, 3e-2,
                      rf"(prompt_encoder|{HEAD})", r"prompt_encoder"),
    # a random tiny BERT's MLM output is flat whatever the prompt: soft prompts need a real encoder
    "prompt_tuning-mlm-text": ("minilm", "mlm", {"name": "prompt_tuning", "num_virtual_tokens": 4,
                                               "prompt_tuning_init": "text",
                                               "prompt_tuning_init_text": "a review of a film"},
                               None, 0.3, r"prompt_encoder", r"prompt_encoder"),
    "prefix_tuning-mlm": ("bert", "mlm", {"name": "prefix_tuning", "num_virtual_tokens": 4}, None, 3e-2,
                          r"prompt_encoder", r"prompt_encoder"),
    "prefix_tuning-llama": ("llama", "sft", {"name": "prefix_tuning", "num_virtual_tokens": 4}, None, 3e-2,
                            r"prompt_encoder", r"prompt_encoder"),
    "ia3": ("bert", "classification", {"name": "ia3"}, None, 5e-3, rf"(ia3_|{HEAD})", r"ia3_"),
    "lora": ("bert", "classification", {"name": "lora"}, None, 5e-3, rf"(lora_|{HEAD})", r"lora_B"),
    "rslora": ("bert", "classification", {"name": "lora", "use_rslora": True}, None, 5e-3, rf"(lora_|{HEAD})",
               r"lora_B"),
    "dora": ("bert", "classification", {"name": "lora", "use_dora": True}, None, 5e-3,
             rf"(lora_|{HEAD})", r"lora_magnitude_vector"),
    "prompt_tuning-llama": ("llama", "sft", {"name": "prompt_tuning", "num_virtual_tokens": 4}, None, 3e-2,
                            r"prompt_encoder", r"prompt_encoder"),
    "ia3-llama": ("llama", "sft", {"name": "ia3"}, None, 3e-2, r"ia3_", r"ia3_"),
    "lora-llama": ("llama", "sft", {"name": "lora"}, None, 1e-2, r"lora_", r"lora_B"),
    # bitsandbytes cannot run the 32-wide tiny BERT in 4-bit; MiniLM is the real target anyway
    "qlora-minilm-classifier": ("minilm", "classification", {"name": "qlora"}, {"load_in": "4bit"}, 5e-3,
                              rf"(lora_|{HEAD})", r"lora_B"),
    "qlora-nf4-double": ("llama", "sft", {"name": "qlora"},
                         {"load_in": "4bit", "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
                         1e-2, r"lora_", r"lora_B"),
    "qlora-fp4": ("llama", "sft", {"name": "qlora"},
                  {"load_in": "4bit", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False},
                  1e-2, r"lora_", r"lora_B"),
    "lora-8bit": ("llama", "sft", {"name": "lora"}, {"load_in": "8bit"}, 1e-2, r"lora_", r"lora_B"),
}


@pytest.fixture
def spy(monkeypatch):
    """Keeps the model as the method left it, and a copy of every parameter before training."""
    from tuitune.engine import methods

    seen: dict = {}
    original = methods.apply_method

    def apply(model, cfg, task):
        model = original(model, cfg, task)
        seen["model"] = model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    monkeypatch.setattr(methods, "apply_method", apply)
    return seen


def case_config(case, tiny_bert, tiny_llama, tiny_csv) -> dict:
    model, task, method, quant, lr, _, _ = CASES[case]
    if model in ("bert", "minilm"):
        cfg = tiny_config(tiny_bert if model == "bert" else "demo:minilm", tiny_csv, task=task, method=method)
    else:
        cfg = tiny_config(tiny_llama, "demo:chat", task=task, method=method,
                          data={"path": "demo:chat", "max_length": 64, "max_train_samples": 64,
                                "max_eval_samples": 16, "label_column": None})
    cfg["training"].update(learning_rate=lr, max_steps=6, eval_steps=6)
    if quant:
        cfg["quantization"] = quant
    return cfg


@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_only_its_parameters(case, spy, tiny_bert, tiny_llama, tiny_csv):
    import torch

    from tuitune.engine.predict import Predictor
    from tuitune.history import History

    model_kind, task, method, quant, _, allowed, must = CASES[case]
    run_id = run_in_process(case_config(case, tiny_bert, tiny_llama, tiny_csv))

    h = History()
    run = h.get_run(run_id)
    assert 0 < run["trainable_params"] <= run["total_params"]
    if method["name"] != "full":
        assert run["trainable_params"] < run["total_params"]
    losses = [m["value"] for m in h.metrics(run_id, "train/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    evals = {e["phase"]: e for e in h.evaluations(run_id)}
    base, final = evals["baseline"]["metrics"]["eval_loss"], evals["final"]["metrics"]["eval_loss"]
    assert math.isfinite(final) and final < base, (base, final)

    model, before = spy["model"], spy["before"]
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "no parameter changed"
    stray = [n for n in changed if not re.search(allowed, n)]
    assert not stray, f"{case} changed parameters it must not: {stray[:5]}"
    assert any(re.search(must, n) for n in changed), f"{case} did not train {must}: {changed[:5]}"

    pred = Predictor.for_run(run_id)
    if task == "classification":
        out = pred.predict("the film was great and wonderful")
        assert len(out["predictions"]) == 3 and abs(sum(p["score"] for p in out["predictions"]) - 1) < 1e-4
    elif task == "mlm":
        out = pred.predict("the film was [MASK] and wonderful", top_k=3)
        assert len(out["predictions"]) == 3 and all(p["token_str"] for p in out["predictions"])
        assert pred.n_virtual == (method.get("num_virtual_tokens", 0) if method["name"] == "prompt_tuning" else 0)
    else:
        out = pred.predict("Hello, how are you?", max_new_tokens=5, do_sample=False)
        assert isinstance(out["generated"], str) and out["new_tokens"] >= 1


def test_prefix_tuning_on_bert_classifier_says_not_supported(tiny_bert, tiny_csv):
    from tuitune.engine.runner import Run
    from tuitune import paths
    from tuitune.config import validate_config
    from tuitune.history import History

    cfg = validate_config(tiny_config(tiny_bert, tiny_csv, method={"name": "prefix_tuning"}))
    h = History()
    run_id = h.create_run(cfg.model_dump(mode="json"), run_dir_for=paths.run_dir)
    assert Run(run_id, history=h).execute() == 1
    run = h.get_run(run_id)
    assert run["status"] == "failed"
    assert "prefix_tuning is not supported for bert classifiers" in run["error"] and "prompt_tuning" in run["error"]


def test_mlm_prompt_tuning_labels_are_shifted_by_the_virtual_tokens(tiny_bert, tiny_csv):
    from transformers import AutoTokenizer

    from tuitune.engine.tasks import VirtualTokenLabels, get_task
    from tuitune.config import validate_config

    cfg = validate_config(tiny_config(tiny_bert, tiny_csv, task="mlm",
                                      method={"name": "prompt_tuning", "num_virtual_tokens": 5}))
    task = get_task(cfg)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    collate = task.collator(tok)
    assert isinstance(collate, VirtualTokenLabels)
    batch = collate([tok("the film was great"), tok("a chair")])
    assert batch["labels"].shape[1] == batch["input_ids"].shape[1] + 5
    assert (batch["labels"][:, :5] == -100).all()
    assert task.meta()["num_virtual_tokens"] == 5


def test_gpu_bench_configs_validate_and_it_skips_without_cuda():
    import argparse
    import importlib.util
    import subprocess
    import sys

    from conftest import ROOT
    from tuitune.config import load_config

    spec = importlib.util.spec_from_file_location("gpu_sft", ROOT / "bench" / "gpu_sft.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(steps=3, batch=2, max_length=64)
    for method, preset in bench.PRESETS.items():
        cfg = load_config(preset, bench.overrides(method, args))
        assert cfg.training.mixed_precision == "bf16" and cfg.training.max_steps == 3
    assert load_config("smollm2-chat-qlora", bench.overrides("qlora", args)).quantization.bnb_4bit_compute_dtype == "bfloat16"

    import torch

    if not torch.cuda.is_available():
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_sft.py")], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and '"skipped"' in out.stdout


@pytest.mark.parametrize("sections, message", [
    ({"method": {"name": "qlora"}}, "qlora needs quantization.load_in: 4bit"),
    ({"method": {"name": "ia3", "use_dora": True}}, "use_dora applies to LoRA"),
    ({"method": {"name": "bitfit"}, "quantization": {"load_in": "8bit"}}, "cannot be trained with method bitfit"),
    ({"method": {"name": "prompt_tuning", "prompt_tuning_init": "text"}}, "needs prompt_tuning_init_text"),
    ({"task": "dpo", "method": {"name": "prefix_tuning"}}, "task dpo does not support method prefix_tuning: use one of"),
])
def test_impossible_combinations_are_refused_before_launch(sections, message):
    from tuitune.config import validate_config
    from tuitune.errors import TuituneError

    cfg = {"model": {"name_or_path": "m"}, "data": {"path": "d.csv"}, **sections}
    with pytest.raises(TuituneError, match=re.escape(message)):
        validate_config(cfg)


def test_quantization_without_bitsandbytes_says_how_to_fix(monkeypatch):
    import builtins

    from tuitune.engine import models
    from tuitune.config import validate_config
    from tuitune.errors import TuituneError

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("no bitsandbytes here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    cfg = validate_config({"task": "sft", "model": {"name_or_path": "m"}, "data": {"path": "demo:chat"},
                           "method": {"name": "qlora"}, "quantization": {"load_in": "4bit"}})
    with pytest.raises(TuituneError, match="4bit loading needs bitsandbytes.*quantization.load_in=none"):
        models.quantization_config(cfg)

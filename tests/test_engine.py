"""The engine trains tiny real models for a few CPU steps and records everything in the history."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import execute_run, tiny_config
from tuitune.history import History


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _eval(h, run_id, phase):
    [e] = h.evaluations(run_id, phase)
    return e["metrics"]


def test_full_finetune_classifier_learns_and_records_history(tiny_bert, tiny_csv):
    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, training={"max_steps": 24, "learning_rate": 1e-2,
                                                                          "eval_steps": 12}))
    h = History()
    run = h.get_run(run_id)
    assert code == 0 and run["status"] == "completed", run["error"]
    base, final = _eval(h, run_id, "baseline"), _eval(h, run_id, "final")
    assert final["eval_loss"] < base["eval_loss"]
    assert final["eval_accuracy"] > base["eval_accuracy"]
    assert 0 <= final["eval_f1"] <= 1
    assert run["main_metric"] == "accuracy" and run["main_value"] == pytest.approx(final["eval_accuracy"])
    assert run["baseline_value"] == pytest.approx(base["eval_accuracy"])
    steps = [m["step"] for m in h.metrics(run_id, "train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 24
    assert h.metrics(run_id, "train/learning_rate") and h.metrics(run_id, "train/tokens_per_second")
    assert [e["kind"] for e in h.events(run_id)][0] == "started"
    assert "checkpoint" in {e["kind"] for e in h.events(run_id)}
    # saved together: model, tokenizer, config, training args, label names
    out = Path(run["run_dir"]) / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tuitune.yaml", "training_args.json"):
        assert (out / name).exists(), name
    meta = json.loads((out / "tuitune.json").read_text())
    assert meta["label_names"] == ["negative", "neutral", "positive"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"]["0"] == "negative"
    # every weight moved
    before = load_file(str(tiny_bert / "model.safetensors"))
    after = _weights(out)
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert any("encoder.layer.0" in k for k in changed)


def test_last_layer_trains_only_the_head(tiny_csv):
    """On the real MiniLM (a random tiny encoder has no features worth probing): only the head moves."""
    from tuitune import demo

    minilm = demo.path("demo:minilm")
    run_id, code = execute_run(tiny_config(minilm, tiny_csv, method={"name": "last_layer"},
                                              training={"max_steps": 10, "learning_rate": 1e-2}))
    h = History()
    run = h.get_run(run_id)
    assert code == 0, run["error"]
    assert run["trainable_params"] < run["total_params"] / 50
    before = load_file(str(minilm / "model.safetensors"))
    after = _weights(Path(run["run_dir"]) / "model")
    compared = 0
    for k, v in after.items():
        src = k.removeprefix("bert.")
        if src in before and not src.startswith("pooler."):
            compared += 1
            assert torch.equal(before[src], v), f"{k} changed but the base is frozen"
    assert compared > 50
    assert not torch.equal(before["pooler.dense.weight"], after["bert.pooler.dense.weight"])
    assert _eval(h, run_id, "final")["eval_loss"] < _eval(h, run_id, "baseline")["eval_loss"]


def test_lora_saves_an_adapter_that_merges(tiny_bert, tiny_csv):
    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, method={"name": "lora", "lora_r": 4},
                                              training={"max_steps": 12, "learning_rate": 5e-3}))
    h = History()
    run = h.get_run(run_id)
    assert code == 0, run["error"]
    out = Path(run["run_dir"]) / "model"
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in adapter)
    assert not (out / "model.safetensors").exists()
    assert 0 < run["trainable_params"] < run["total_params"]
    assert _eval(h, run_id, "final")["eval_loss"] < _eval(h, run_id, "baseline")["eval_loss"]

    from tuitune.engine import predict

    tuned = predict.Predictor.for_run(run_id).predict("the film was great and wonderful really best")
    merged_dir = predict.merge(run_id)
    assert (merged_dir / "model.safetensors").exists()
    # The merged model answers exactly like adapter + base.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(merged_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    with torch.no_grad():
        probs = model(**tok("the film was great and wonderful really best", return_tensors="pt")).logits.softmax(-1)[0]
    by_label = {p["label"]: p["score"] for p in tuned["predictions"]}
    for i, name in model.config.id2label.items():
        assert probs[int(i)].item() == pytest.approx(by_label[name], abs=1e-5)


def test_masked_lm_lowers_perplexity_and_fills_masks(tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, task="mlm", data={"label_column": None},
                      training={"max_steps": 15, "learning_rate": 1e-2})
    run_id, code = execute_run(cfg)
    h = History()
    run = h.get_run(run_id)
    assert code == 0, run["error"]
    base, final = _eval(h, run_id, "baseline"), _eval(h, run_id, "final")
    assert final["eval_perplexity"] < base["eval_perplexity"]
    assert run["main_metric"] == "perplexity"

    from tuitune.engine.predict import Predictor

    answer = Predictor.for_run(run_id).predict("the film was [MASK] and wonderful", top_k=4)
    preds = answer["predictions"]
    assert len(preds) == 4
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert all(p["token_str"] for p in preds)


def test_missing_column_fails_the_run_with_the_fix(tiny_bert, tiny_csv):
    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, data={"label_column": "stars"}))
    run = History().get_run(run_id)
    assert code == 1 and run["status"] == "failed"
    assert run["error"] == "label column 'stars' not in dataset: columns are text, label (set data.label_column)"


def test_validation_split_is_carved_with_the_seed(tiny_bert, tiny_csv):
    from tuitune.engine.data import load_raw, splits
    from tuitune.config import DataConfig

    d = DataConfig(path=str(tiny_csv))
    a = splits(load_raw(d), d, seed=1)
    b = splits(load_raw(d), d, seed=1)
    c = splits(load_raw(d), d, seed=2)
    assert len(a["validation"]) == 24 and len(a["train"]) == 216
    assert a["validation"]["text"] == b["validation"]["text"] != c["validation"]["text"]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".txt"])
def test_local_file_formats_load(tmp_path, suffix, tiny_csv):
    import datasets

    from tuitune.engine.data import load_raw
    from tuitune.config import DataConfig

    ds = datasets.load_dataset("csv", data_files=str(tiny_csv))["train"]
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        ds.to_parquet(str(path))
    elif suffix == ".txt":
        path.write_text("\n".join(ds["text"]) + "\n")
    elif suffix == ".jsonl":
        ds.to_json(str(path), lines=True)
    else:
        path.write_text(json.dumps([dict(r) for r in ds]))
    loaded = load_raw(DataConfig(path=str(path)))["train"]
    assert len(loaded) == 240
    assert "text" in loaded.column_names

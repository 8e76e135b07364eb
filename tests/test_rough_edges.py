"""Rough edges found by hand at 80x24, trying tuitune as a new user would (issue 10): each one
fixed and held here by a CLI test (the real `tuitune` entry point) or a Pilot test at 80x24."""

from __future__ import annotations

import json
import os

from conftest import tiny_config
from helpers_faults import cli
from tuitune.history import History


def _row(tiny_bert, tiny_csv, **sections) -> int:
    from tuitune import paths
    from tuitune.config import validate_config

    h = History()
    run_id = h.create_run(validate_config(tiny_config(tiny_bert, tiny_csv, **sections)).model_dump(mode="json"),
                          run_dir_for=paths.run_dir)
    h.close()
    return run_id


# -- tuitune show: "final" only for the final evaluation ------------------------------------------

def test_show_labels_a_periodic_evaluation_by_its_step_while_running(tiny_bert, tiny_csv):
    run_id = _row(tiny_bert, tiny_csv)
    h = History()
    h.update_run(run_id, pid=os.getpid(), max_steps=12, main_metric="accuracy")
    h.set_status(run_id, "running")
    h.log_evaluation(run_id, "baseline", 0, {"eval_accuracy": 0.33})
    h.log_evaluation(run_id, "eval", 4, {"eval_accuracy": 0.5})  # as the engine's callback writes it
    r = cli("show", run_id)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("  eval@4   {'eval_accuracy': 0.5}") for ln in lines), r.stdout
    assert not any(ln.strip().startswith("final") for ln in lines), r.stdout
    shown = json.loads(cli("show", run_id, "--json").stdout)
    assert (shown["metrics_phase"], shown["metrics_step"]) == ("eval", 4)

    h.log_evaluation(run_id, "final", 12, {"eval_accuracy": 0.75})
    h.set_status(run_id, "completed")
    r = cli("show", run_id)
    assert any(ln.startswith("  final    {'eval_accuracy': 0.75}") for ln in r.stdout.splitlines()), r.stdout
    assert "eval@" not in r.stdout
    h.close()


# -- tuitune predict names the model's own mask token -------------------------------------------

def test_predict_names_the_models_own_mask_token(tiny_bert, tiny_csv):
    """A fill-mask model whose mask token is `<mask>` (RoBERTa's spelling), asked without one."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tuitune import paths

    cfg = tiny_config(tiny_bert, tiny_csv, task="mlm")
    cfg["data"]["label_column"] = None
    run_id = _row(tiny_bert, tiny_csv)
    h = History()
    h.update_run(run_id, config=json.dumps(cfg))
    h.set_status(run_id, "completed")
    h.close()
    model_dir = paths.run_dir(run_id) / "model"
    tok = AutoTokenizer.from_pretrained(str(tiny_bert), mask_token="<mask>")
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert))
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    (model_dir / "tuitune.json").write_text(json.dumps({"task": "mlm", "label_names": [], "base_model": str(tiny_bert),
                                                         "method": "full", "peft": False}))
    r = cli("predict", run_id, "This is a great movie!")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ('tuitune: error: text has no <mask>: write e.g. "This is a <mask> movie!" '
                                '([MASK] works too)')
    r = cli("predict", run_id, "This is a <mask> movie!", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads(r.stdout)["predictions"]) == 5

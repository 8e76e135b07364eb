"""Evaluation depth (issue 9): per-class report and confusion matrix at every evaluation, the
misclassified rows after the final one, probes at every evaluation, masked-LM top-k accuracy, and
what a run cost — stored in the history and shown by `tuitune show` / `tuitune errors`."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess

import pytest
from conftest import execute_run, tiny_config, tuitune_cmd

from tuitune.history import MIGRATIONS, History


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*tuitune_cmd(), *args], capture_output=True, text=True, timeout=120)


def test_a_classification_run_stores_its_class_reports_errors_and_cost(tiny_bert, tiny_csv):
    """One tiny run (6 steps, evaluations at 3 and 6) checked three ways, to keep the suite fast."""
    cfg = tiny_config(tiny_bert, tiny_csv, evaluation={"max_errors": 1000})
    run_id, code = execute_run(cfg)
    assert code == 0, History().get_run(run_id).error
    check_class_report_and_confusion_matrix_at_every_evaluation(run_id)
    check_errors_are_exactly_the_misclassified_rows(run_id, tiny_csv)
    check_resources_are_recorded_on_the_run(run_id)


def check_class_report_and_confusion_matrix_at_every_evaluation(classification_run):
    h = History()
    rid = classification_run
    evals = h.evaluations(rid)
    reports = h.class_report(rid)
    # one report per evaluation, same phases and steps, in order
    assert [(p, s) for p, s, _ in reports] == [(e.phase, e.step) for e in evals]
    assert {p for p, _, _ in reports} >= {"baseline", "eval", "final"}
    n_eval_rows = round(240 * 0.1)  # tiny_csv's 240 rows, validation_size 0.1
    for e, cm in zip(evals, h.confusions(rid)):
        assert cm["phase"] == e.phase and cm["step"] == e.step
        matrix, labels = cm["matrix"], cm["labels"]
        assert sorted(labels) == ["negative", "neutral", "positive"]
        total = sum(map(sum, matrix))
        assert total == n_eval_rows  # every evaluation row counted once
        diagonal = sum(matrix[i][i] for i in range(len(labels)))
        assert diagonal / total == pytest.approx(e.metrics["eval_accuracy"])
    for (phase, step, report), e in zip(reports, evals):
        present = [r for r in report.values() if r["support"] or r["precision"]]
        assert sum(r["f1"] for r in present) / len(present) == pytest.approx(e.metrics["eval_f1"])
        assert sum(r["support"] for r in report.values()) == n_eval_rows
    latest = h.confusion(rid, "final")
    assert latest["matrix"] == h.confusions(rid)[-1]["matrix"]
    assert h.confusion(rid, "test") is None  # tiny_csv has no test split


def check_errors_are_exactly_the_misclassified_rows(classification_run, tiny_csv):
    from tuitune.engine.predict import Predictor

    h = History()
    rid = classification_run
    cm = h.confusion(rid, "final")
    labels, matrix = cm["labels"], cm["matrix"]
    errors = h.errors(rid)
    wrong = sum(matrix[i][j] for i in range(len(labels)) for j in range(len(labels)) if i != j)
    assert 0 < wrong < 24, "the tiny run should get some rows right and some wrong"
    assert len(errors) == wrong
    for i, t in enumerate(labels):  # each cell of the matrix lists its own rows
        for j, p in enumerate(labels):
            if i != j:
                assert len(h.errors(rid, true_label=t, pred_label=p)) == matrix[i][j]
    truth = {row["text"]: row["label"] for row in csv.DictReader(tiny_csv.open())}
    pred = Predictor.for_run(rid)
    for e in errors:
        assert e["true_label"] != e["pred_label"]
        assert truth[e["text"]] == e["true_label"]  # the stored text is that row's
        top = pred.classify(e["text"])["predictions"][0]  # the saved model makes that mistake
        assert top["label"] == e["pred_label"] and top["score"] == pytest.approx(e["confidence"], abs=1e-4)
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)

    out = _cli("errors", str(rid), "--json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == wrong
    t, p = errors[0]["true_label"], errors[0]["pred_label"]
    out = _cli("errors", str(rid), "--true", t, "--pred", p)
    assert out.returncode == 0 and t in out.stdout and p in out.stdout
    out = _cli("errors", str(rid), "--true", "no-such-label")
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "positive" in out.stderr
    show = json.loads(_cli("show", str(rid), "--json").stdout)
    assert show["errors_stored"] == wrong and show["confusion"][-1]["matrix"] == matrix
    assert {c["phase"] for c in show["class_report"]} >= {"baseline", "final"}
    text = _cli("show", str(rid)).stdout
    assert "confusion matrix, final" in text and "→" in text


def test_max_errors_caps_the_stored_rows(tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, evaluation={"max_errors": 2, "baseline": False},
                      training={"max_steps": 2, "eval_steps": 2})
    rid, code = execute_run(cfg)
    assert code == 0
    h = History()
    wrong = sum(v for i, row in enumerate(h.confusion(rid, "final")["matrix"]) for j, v in enumerate(row) if i != j)
    assert len(h.errors(rid)) == min(2, wrong)


def check_resources_are_recorded_on_the_run(classification_run):
    run = History().get_run(classification_run)
    assert run.wall_time_s > run.train_time_s > 0
    assert run.peak_ram_bytes > 50 * 2**20  # torch alone is more than that
    assert run.peak_gpu_bytes is None  # no CUDA here
    assert run.tokens_per_s > 0
    show = json.loads(_cli("show", str(classification_run), "--json").stdout)
    assert show["peak_ram_bytes"] == run.peak_ram_bytes and show["train_time_s"] == run.train_time_s


def test_masked_lm_probes_at_every_evaluation_and_top_k_accuracy(tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, task="mlm", data={"label_column": None},
                      evaluation={"probes": ["This is a [MASK] movie!", "I <mask> it."]})
    rid, code = execute_run(cfg)
    h = History()
    assert code == 0, h.get_run(rid).error
    evals = h.evaluations(rid)
    probes = h.probes(rid)
    answered = sorted({(p["phase"], p["step"]) for p in probes})
    assert answered == sorted({(e.phase, e.step) for e in evals})  # every evaluation, baseline to final
    assert all(len([p for p in probes if (p["phase"], p["step"]) == k]) == 2 for k in answered)
    for p in probes:
        assert p["answer"] and not p["answer"].startswith("(error")
        assert len(p["detail"]["top"]) == 5
    for e in evals:
        top1, top5 = e.metrics["eval_top1_accuracy"], e.metrics["eval_top5_accuracy"]
        assert 0 <= top1 <= top5 <= 1
    assert h.class_report(rid) == []

    out = _cli("errors", str(rid))  # no labels: one line, non-zero
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "classification" in out.stderr
    out = _cli("errors", str(rid), "--json")
    assert out.returncode != 0 and "error" in json.loads(out.stdout)
    text = _cli("show", str(rid)).stdout
    assert "probe 'This is a [MASK] movie!'" in text and "baseline" in text


def test_probes_without_a_mask_token_are_refused_before_launch(tiny_bert, tiny_csv, tuitune_home):
    out = _cli("run", "minilm-mlm", "--set", "evaluation.probes=['a sentence without a mask']")
    assert out.returncode != 0 and out.stderr.count("\n") == 1
    assert "mask" in out.stderr and "evaluation.probes" in out.stderr
    assert not (tuitune_home / "history.db").exists() or History().list_runs() == []


def test_sft_probes_answer_greedily_at_every_evaluation(tiny_llama):
    cfg = tiny_config(tiny_llama, "demo:chat", task="sft", method={"name": "lora"},
                      data={"path": "demo:chat", "max_length": 64, "max_train_samples": 32, "max_eval_samples": 8,
                            "label_column": None, "messages_column": "messages"},
                      evaluation={"probes": ["Hello"], "probe_max_new_tokens": 4})
    cfg["training"].update(learning_rate=1e-2, max_steps=2, eval_steps=2)
    rid, code = execute_run(cfg)
    h = History()
    assert code == 0, h.get_run(rid).error
    probes = h.probes(rid)
    assert {p["phase"] for p in probes} >= {"baseline", "final"}
    assert all(1 <= p["detail"]["new_tokens"] <= 4 for p in probes)
    # greedy: the same weights give the same answer (the final evaluation reuses step 2's weights)
    at2 = [p["answer"] for p in probes if p["step"] == 2]
    assert len(at2) >= 2 and len(set(at2)) == 1


def test_an_old_history_gains_the_new_tables_and_columns_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + ";PRAGMA user_version=1;")
    conn.execute("INSERT INTO runs (name, status, config, created_at) VALUES ('old', 'completed', '{}', 1)")
    conn.commit()
    conn.close()
    h = History(path)
    assert h.migrations_applied == len(MIGRATIONS) - 1
    run = h.get_run(1)
    assert run.name == "old" and run.peak_ram_bytes is None and run.tokens_per_s is None
    h.log_class_report(1, "final", 5, ["a", "b"], {"a": {"precision": 1, "recall": 1, "f1": 1, "support": 2},
                                                    "b": {"precision": 1, "recall": 1, "f1": 1, "support": 1}},
                       [[2, 0], [0, 1]])
    h.log_errors(1, "final", 5, [{"row": 0, "text": "x", "true_label": "a", "pred_label": "b", "confidence": 0.9}])
    h.log_probes(1, "final", 5, [{"input": "p", "answer": "q"}])
    assert h.confusion(1, "final") == {"labels": ["a", "b"], "matrix": [[2, 0], [0, 1]], "step": 5}
    assert h.class_report(1)[0][0:2] == ("final", 5)
    h.truncate_after(1, 4)  # a resume from step 4 drops what came after
    assert h.confusion(1, "final") is None and h.errors(1) == [] and h.probes(1) == []
    h.delete_run(1)
    assert h.list_runs() == []


def test_memory_estimate_counts_its_parts_and_follows_method_batch_and_task():
    from tuitune.model_info import inspect_model

    info = inspect_model("demo:minilm")
    full = info.estimate("full", 16, 128)
    assert full["total"] == sum(v for k, v in full.items() if k != "total")
    lora = info.estimate("lora", 16, 128)
    assert lora["train_state"] < full["train_state"] and lora["weights"] == full["weights"]
    assert info.estimate("full", 32, 128)["activations"] == 2 * full["activations"]
    assert full["logits"] == 0 and info.estimate("full", 16, 128, task="mlm")["logits"] > 0
    assert info.memory(16, 128)["full"] == full["total"]
    llm = inspect_model("demo:smollm2")
    sft, dpo = (llm.estimate("lora", 4, 128, task=t, lora_dropout=0.0) for t in ("sft", "dpo"))
    assert dpo["activations"] == 2 * sft["activations"]  # chosen and rejected
    # LoRA dropout keeps each adapted layer's input; TRL's DPO turns dropout off
    assert llm.estimate("lora", 4, 128, task="sft")["activations"] > sft["activations"]
    assert llm.estimate("lora", 4, 128, task="dpo")["activations"] == dpo["activations"]
    assert llm.estimate("full", 4, 128, task="dpo")["weights"] == 2 * llm.estimate("full", 4, 128, task="sft")["weights"]
    assert llm.estimate("qlora", 4, 128, task="sft", load_in="4bit")["weights"] < sft["weights"]


def test_export_writes_class_reports_errors_and_probes(tmp_path):
    h = History()
    rid = h.create_run({"name": "x", "task": "classification", "model": {"name_or_path": "m"},
                        "data": {"path": "d"}, "method": {"name": "full"}})
    h.log_class_report(rid, "final", 5, ["a", "b"], {"a": {"precision": 1, "recall": 1, "f1": 1, "support": 1},
                                                      "b": {"precision": 0, "recall": 0, "f1": 0, "support": 1}},
                       [[1, 0], [1, 0]])
    h.log_errors(rid, "final", 5, [{"row": 1, "text": "t", "true_label": "b", "pred_label": "a", "confidence": 0.8}])
    h.log_probes(rid, "final", 5, [{"input": "p", "answer": "q"}])
    out = json.loads(_cli("export", str(rid), "--out", str(tmp_path / "exp"), "--format", "json", "--json").stdout)
    files = {f.rsplit("/", 1)[-1]: f for f in out["files"]}
    errors = json.loads(open(files[f"run-{rid}-errors.json"]).read())
    assert [(e["true_label"], e["pred_label"]) for e in errors] == [("b", "a")]
    reports = json.loads(open(files[f"run-{rid}-class-reports.json"]).read())
    assert json.loads(reports[0]["matrix"]) == [[1, 0], [1, 0]]
    assert json.loads(open(files[f"run-{rid}-probes.json"]).read())[0]["answer"] == "q"

"""The real `tuitune` entry point, end to end, with tiny models (the engine runs as a subprocess)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_config, tuitune_cmd


def tuitune(*args, check_rc=None, timeout=300):
    env = dict(os.environ)
    proc = subprocess.run(tuitune_cmd() + list(args), capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    return proc


def write_config(tmp_path, cfg, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_follows_to_the_end_and_prints_json(tmp_path, tiny_bert, tiny_csv):
    path = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv))
    out = tuitune("run", str(path), "--set", "training.max_steps=8", "--json", check_rc=0)
    result = json.loads(out.stdout)
    assert result["status"] == "completed"
    assert result["metrics"]["eval_loss"] < result["baseline"]["eval_loss"]
    assert result["step"] == 8
    listing = json.loads(tuitune("runs", "--json", check_rc=0).stdout)
    assert [r["id"] for r in listing] == [result["id"]]
    shown = json.loads(tuitune("show", str(result["id"]), "--json", check_rc=0).stdout)
    assert shown["config"]["training"]["max_steps"] == 8
    table = tuitune("runs", check_rc=0).stdout
    assert "completed" in table and "accuracy" in table and "tiny" not in table.split("\n")[0]
    answer = json.loads(tuitune("predict", str(result["id"]), "great wonderful best", "--json", check_rc=0).stdout)
    assert {p["label"] for p in answer["predictions"]} == {"negative", "neutral", "positive"}
    assert sum(p["score"] for p in answer["predictions"]) == pytest.approx(1.0, abs=1e-4)


def test_detached_run_lives_on_and_can_be_watched(tmp_path, tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 60, "eval_steps": 30, "logging_steps": 2})
    path = write_config(tmp_path, cfg)
    started = json.loads(tuitune("run", str(path), "--detach", "--json", check_rc=0).stdout)
    rid = str(started["id"])
    seen_steps, deadline = [], time.time() + 120
    while time.time() < deadline:
        shown = json.loads(tuitune("show", rid, "--json", check_rc=0).stdout)
        if shown["status"] == "running" and shown["step"]:
            seen_steps.append(shown["step"])
        if shown["status"] not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert shown["status"] == "completed", shown["error"]
    assert len(seen_steps) >= 2 and seen_steps[-1] > seen_steps[0], seen_steps  # metrics grew while live
    log = (ROOT / shown["log"]) if not os.path.isabs(shown["log"]) else shown["log"]
    assert os.path.exists(log)


def test_stop_ends_a_live_run_as_stopped_with_a_checkpoint(tmp_path, tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 100000, "eval_steps": 100000})
    started = json.loads(tuitune("run", str(write_config(tmp_path, cfg)), "--detach", "--json", check_rc=0).stdout)
    rid = str(started["id"])
    deadline = time.time() + 120
    while json.loads(tuitune("show", rid, "--json").stdout)["step"] in (None, 0) and time.time() < deadline:
        time.sleep(0.3)
    out = tuitune("stop", rid, check_rc=0)
    assert "stop requested" in out.stdout
    while time.time() < deadline:
        shown = json.loads(tuitune("show", rid, "--json").stdout)
        if shown["status"] not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert shown["status"] == "stopped"
    assert list(Path(shown["run_dir"], "checkpoints").glob("checkpoint-*"))


@pytest.mark.parametrize("args, message", [
    (["run", "no-such-preset"], "no preset or file named 'no-such-preset'"),
    (["run", "bbc-news-minilm", "--set", "training.learning_rate=0"], "learning_rate: must be greater than 0"),
    (["run", "bbc-news-minilm", "--set", "nonsense"], "--set needs key=value"),
    (["show", "42"], "no run 42 in the history"),
    (["show", "abc"], "run id must be a number"),
    (["stop", "7"], "no run 7"),
    (["predict", "3", "This is a [MASK] movie!"], "no run 3"),
])
def test_errors_are_one_line_and_exit_non_zero(args, message):
    out = tuitune(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_json_errors_are_json():
    out = tuitune("show", "99", "--json")
    assert out.returncode == 2
    assert "no run 99" in json.loads(out.stdout)["error"]


def test_presets_lists_shipped_presets_with_descriptions():
    rows = json.loads(tuitune("presets", "--json", check_rc=0).stdout)
    names = {r["name"]: r["description"] for r in rows}
    assert "bbc-news-minilm" in names and names["bbc-news-minilm"]


def test_presets_ship_in_a_non_editable_install(tmp_path):
    """`pip install .` (not editable) installs one namespace, `tuitune`: the engine, screens and
    presets are its sub-packages (the presets found as package data), and nothing top-level."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    code = ("import tuitune.presets as p, json; "
            "print(json.dumps([str(p.presets_dir()), p.list_presets()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, check=True)
    where, names = json.loads(out.stdout)
    assert where.startswith(str(target))
    assert "bbc-news-minilm" in names and "minilm-mlm" in names
    assert {p.name for p in target.iterdir()} - {"bin"} - {p.name for p in target.glob("*-info")} \
        == {"tuitune"}
    probe = ("import importlib.util as u, json; import tuitune.engine, tuitune.screens, tuitune.presets; "
             "print(json.dumps([tuitune.engine.__file__, [u.find_spec(m) is None for m in "
             "('engine', 'screens', 'presets')]]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, check=True)
    engine_file, missing = json.loads(out.stdout)
    assert engine_file.startswith(str(target / "tuitune" / "engine"))
    assert missing == [True, True, True], "top-level engine/screens/presets must not be importable"


def test_export_writes_the_whole_timeline(tmp_path):
    """Export reads the history with sqlite-utils; rows written by History come back whole."""
    import csv

    from tuitune.history import History

    h = History()
    rid = h.create_run({"name": "x", "task": "classification", "model": {"name_or_path": "m"},
                        "data": {"path": "d"}, "method": {"name": "full"}})
    for step in range(1, 6):
        h.log_metrics(rid, step, {"train/loss": 1.0 / step})
    h.log_evaluation(rid, "final", 5, {"eval_accuracy": 0.75})
    h.set_status(rid, "completed")
    out = json.loads(tuitune("export", str(rid), "--out", str(tmp_path / "exp"), "--json", check_rc=0).stdout)
    files = {Path(f).name: Path(f) for f in out["files"]}
    with open(files[f"run-{rid}-metrics.csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["value"]) == pytest.approx(0.2)
    assert json.loads(files[f"run-{rid}.json"].read_text())["status"] == "completed"
    assert all(str(f).startswith(str(tmp_path / "exp")) for f in files.values())


def test_presets_saved_by_the_user_are_listed_and_runnable_by_name(tuitune_home):
    from tuitune.config import load_config
    from tuitune.presets import save_user_preset

    save_user_preset("my-lora", load_config("bbc-news-minilm", ["method.name=lora"]))
    rows = json.loads(tuitune("presets", "--json", check_rc=0).stdout)
    mine = [r for r in rows if r["name"] == "my-lora"]
    assert mine and mine[0]["source"] == "yours"
    shown = json.loads(tuitune("config", "my-lora", "--json", check_rc=0).stdout)
    assert shown["method"]["name"] == "lora"

"""`tuitune predict RUN` without TEXT: inputs line by line from stdin or --file, answered by one
engine process that keeps the model loaded; `--json` gives one JSON answer per line."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
from conftest import run_in_process, tiny_config, tuitune_cmd


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory, tiny_bert, tiny_csv):
    """A tiny masked-LM run, trained 2 steps in its own TUITUNE_HOME (shared by this module's tests)."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TUITUNE_HOME", str(home))
    try:
        run_id = run_in_process(tiny_config(tiny_bert, tiny_csv, name="tiny-mlm", task="mlm",
                                            data={"label_column": None}, training={"max_steps": 2, "eval_steps": 2}))
    finally:
        mp.undo()
    return home, run_id


def test_predict_reads_stdin_line_by_line_with_the_model_loaded_once(mlm_run, monkeypatch, capsys):
    from tuitune import cli
    from tuitune.engine.predict import Predictor
    from tuitune.predict_client import PredictClient

    home, run_id = mlm_run
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    starts = []
    real_start = PredictClient._start

    def counting_start(self):
        starts.append(1)
        return real_start(self)

    monkeypatch.setattr(PredictClient, "_start", counting_start)
    lines = ["the film was [MASK] and wonderful", "", "a [MASK] movie", "no mask here", "the [MASK] was great"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code = cli.main(["predict", str(run_id), "--json", "--top-k", "3"])
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(starts) == 1  # one engine process answered every line
    assert [o["text"] for o in out] == [ln for ln in lines if ln]
    assert "no [MASK]" in out[2]["error"] and code == 2  # a bad line: its own error; the rest answered
    pred = Predictor.for_run(run_id)
    for o in (out[0], out[1], out[3]):
        expected = pred.predict(o["text"], top_k=3)["predictions"]
        assert [p["token_str"] for p in o["predictions"]] == [p["token_str"] for p in expected]
        assert o["predictions"][0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


def test_predict_file_with_the_real_cli(mlm_run, tmp_path, monkeypatch):
    import os

    from tuitune.engine.predict import Predictor

    home, run_id = mlm_run
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("the film was [MASK]\nthe [MASK] was boring\n", encoding="utf-8")
    env = dict(os.environ, TUITUNE_HOME=str(home))
    plain = subprocess.run(tuitune_cmd() + ["predict", str(run_id), "--file", str(inputs)],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert plain.returncode == 0, plain.stderr
    ranked = [ln.split()[1] for ln in plain.stdout.splitlines() if ln.strip()[:2].rstrip(".").isdigit()]
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    pred = Predictor.for_run(run_id)
    assert ranked == [p["token_str"] for t in ("the film was [MASK]", "the [MASK] was boring")
                      for p in pred.predict(t)["predictions"]]
    missing = subprocess.run(tuitune_cmd() + ["predict", str(run_id), "--file", str(tmp_path / "nope.txt")],
                             capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "cannot read --file" in missing.stderr

"""Hyperparameter sweeps (Optuna): every trial a real run of the tiny model in its own engine process.

Engine start-up (importing transformers) dominates, so each engine test does several checks on
one sweep: a 4-trial CLI sweep (linked runs, best == best trial, show, sweeps, refine); pruning and
resume after kill -9 of the sweep process; two workers sharing one study through SQLite and
through a real PostgreSQL server.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tiny_config, tuitune_cmd
from tuitune.errors import TuituneError

LR = "training.learning_rate"


def tuitune(*args, env=None, check_rc=None, timeout=400):
    proc = subprocess.run(tuitune_cmd() + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.stdout, proc.stderr)
    return proc


def sweep_config(tmp_path, tiny_bert, tiny_csv, **training) -> Path:
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 8, "eval_steps": 2, **training},
                      evaluation={"baseline": False, "on_test": False})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def history_runs(home: Path, sweep_name: str) -> list[dict]:
    conn = sqlite3.connect(home / "history.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM runs WHERE sweep=? ORDER BY trial", (sweep_name,))]
    conn.close()
    return rows


def final_metric(home: Path, run_id: int, key: str) -> float:
    conn = sqlite3.connect(home / "history.db")
    row = conn.execute("SELECT metrics FROM evaluations WHERE run_id=? AND phase='final'", (run_id,)).fetchone()
    conn.close()
    return json.loads(row[0])[key]


# -- no engine: parsing, checks, migration, GPUs, refine ----------------------------------------------

def test_specs_parse_into_ranges_and_choices():
    from tuitune.sweep import parse_param

    p = parse_param("training.learning_rate=log:1e-5..1e-3")
    assert (p.kind, p.low, p.high) == ("log", 1e-5, 1e-3)
    p = parse_param("method.lora_r=int:4..32")
    assert (p.kind, p.low, p.high) == ("int", 4, 32) and isinstance(p.low, int)
    assert parse_param("training.warmup_steps=float:0..0.3").high == 0.3
    p = parse_param("method.name=choice:lora,full")
    assert p.choices == ["lora", "full"]
    assert parse_param("training.per_device_train_batch_size=choice:4,8,16").choices == [4, 8, 16]


@pytest.mark.parametrize("param, message", [
    ("training.learning_rate=lg:1e-5..1e-3", "bad SPEC"),
    ("training.learning_rate", "needs KEY=SPEC"),
    ("training.learning_rate=log:1e-3..1e-5", "empty range"),
    ("method.lora_r=int:8..8", "empty range"),
    ("training.learning_rate=log:0..1e-3", "above 0"),
    ("method.lora_r=int:4.5..8", "whole numbers"),
    ("training.learning_rate=float:1e-5", "LOW..HIGH"),
    ("method.lora_r=choice:8", "two or more"),
])
def test_bad_specs_are_one_line(param, message):
    from tuitune.sweep import parse_param

    with pytest.raises(TuituneError, match=message) as err:
        parse_param(param)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--param", "training.lerning_rate=log:1e-5..1e-3"], "unknown config key 'training.lerning_rate'"),
    (["--param", "training.learning_rate=log:1e-5..1e-5"], "empty range"),
    (["--param", "training.learning_rate=float:0.5..2"], "not valid"),
    (["--param", "training.learning_rate=log:1e-5..1e-3", "--metric", "bleu"], "does not report it"),
    (["--param", "training=int:1..3"], "is a section"),
    (["--param", "training.learning_rate=choice:1e-3,2e-3", "--trials", "0"], "--trials"),
    (["--param", "training.learning_rate=lg:1"], "bad SPEC"),
])
def test_bad_input_is_refused_before_any_trial(tmp_path, tiny_bert, tiny_csv, tuitune_home, args, message):
    path = sweep_config(tmp_path, tiny_bert, tiny_csv)
    out = tuitune("sweep", str(path), *args, "--json")
    assert out.returncode == 2
    assert message in json.loads(out.stdout)["error"]
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    # nothing started: no study, no run
    assert not (tuitune_home / "sweeps.db").exists()
    assert not (tuitune_home / "history.db").exists() or not sqlite3.connect(
        tuitune_home / "history.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_migration_adds_trial_links_and_pruned_keeping_every_row(tmp_path):
    """A history written by schema 1 (before sweeps) opens, keeps its runs and their metrics, and
    takes trial links and the `pruned` status; foreign keys still hold."""
    from tuitune.history import MIGRATIONS, History

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute("INSERT INTO runs (name, status, config, created_at) VALUES ('old', 'completed', '{}', 1)")
    conn.execute("INSERT INTO metrics (run_id, key, step, time, value) VALUES (1, 'train/loss', 1, 1, 0.5)")
    conn.execute("INSERT INTO evaluations (run_id, phase, step, time, metrics) VALUES (1, 'final', 1, 1, '{}')")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE runs SET status='pruned' WHERE id=1")
    conn.close()

    h = History(db)
    assert h.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    run = h.get_run(1)
    assert run["name"] == "old" and run["status"] == "completed" and run["sweep"] is None
    assert [m["value"] for m in h.metrics(1)] == [0.5] and len(h.evaluations(1)) == 1
    h.update_run(1, sweep="s", trial=3, params='{"training.learning_rate": 0.001}')
    h.set_status(1, "pruned", error="pruned at step 2")
    assert h.get_run(1)["status"] == "pruned" and h.get_run(1)["trial"] == 3
    with pytest.raises((sqlite3.IntegrityError, TuituneError), match="CHECK"):
        h.conn.execute("UPDATE runs SET status='bogus' WHERE id=1")
    with pytest.raises((sqlite3.IntegrityError, TuituneError), match="FOREIGN KEY"):
        h.conn.execute("INSERT INTO metrics (run_id, key, step, time, value) VALUES (99, 'x', 1, 1, 1)")
    h.delete_run(1)  # deletes cascade as before
    assert h.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    h.close()
    History(db).close()  # reopening does not migrate again


def test_each_parallel_trial_gets_its_own_gpus():
    from tuitune.sweep import device_slots

    assert device_slots([], 3) == [None, None, None]  # CPU: nothing to assign
    assert device_slots(["0", "1", "2", "3"], 4) == ["0", "1", "2", "3"]
    assert device_slots(["0", "1", "2", "3"], 2) == ["0", "1"]
    assert device_slots(["0", "1", "2", "3"], 2, per_trial=2) == ["0,1", "2,3"]  # DDP trials
    assert device_slots(["4", "6"], 2) == ["4", "6"]  # ids as CUDA_VISIBLE_DEVICES gave them
    with pytest.raises(TuituneError, match="use --parallel 2"):
        device_slots(["0", "1"], 3)
    with pytest.raises(TuituneError, match="use --parallel 1"):
        device_slots(["0", "1", "2"], 2, per_trial=2)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    from tuitune.sweep import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def _definition(tmp_path, tiny_bert, tiny_csv, params, **kw):
    from tuitune import sweep

    cfg = tiny_config(tiny_bert, tiny_csv)
    return sweep.build_definition(cfg, [sweep.parse_param(p) for p in params], name="s", **kw)


def test_grid_when_every_param_is_a_choice_else_tpe(tmp_path, tiny_bert, tiny_csv):
    from tuitune import sweep

    d = _definition(tmp_path, tiny_bert, tiny_csv, [f"{LR}=choice:1e-3,2e-3", "training.seed=choice:1,2,3"],
                    trials=50)
    assert d.trials == 6 and type(sweep.make_sampler(d)).__name__ == "GridSampler"
    d = _definition(tmp_path, tiny_bert, tiny_csv, [f"{LR}=log:1e-4..1e-2", "training.seed=choice:1,2"])
    assert d.trials == 10 and type(sweep.make_sampler(d)).__name__ == "TPESampler"
    assert (d.metric, d.direction) == ("accuracy", "maximize")  # the task's main metric
    assert _definition(tmp_path, tiny_bert, tiny_csv, [f"{LR}=log:1e-4..1e-2"], metric="eval_loss").direction == "minimize"


def test_refine_narrows_numeric_ranges_around_the_best_trials(tmp_path, tiny_bert, tiny_csv):
    import optuna

    from tuitune import sweep

    d = _definition(tmp_path, tiny_bert, tiny_csv,
                    [f"{LR}=log:1e-6..1e-1", "method.lora_r=int:2..64", "training.seed=choice:1,2,3"],
                    metric="loss", direction="minimize")
    study = optuna.create_study(direction="minimize")
    dists = {LR: optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True),
             "method.lora_r": optuna.distributions.IntDistribution(2, 64),
             "training.seed": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    for lr, r, seed, loss in [(1e-3, 16, 1, 0.2), (2e-3, 20, 2, 0.25), (1e-6, 2, 3, 2.0), (1e-1, 64, 3, 3.0)]:
        study.add_trial(optuna.trial.create_trial(params={LR: lr, "method.lora_r": r, "training.seed": seed},
                                                  distributions=dists, value=loss))
    new = {p.key: p for p in sweep.refine_params(d, study, top=2)}
    old = {p.key: p for p in d.params}
    for key in (LR, "method.lora_r"):
        assert old[key].low <= new[key].low < new[key].high <= old[key].high
        assert new[key].high - new[key].low < old[key].high - old[key].low
    assert new[LR].low <= 1e-3 and new[LR].high >= 2e-3 and new[LR].high < 1e-2
    assert new["method.lora_r"].low <= 16 and new["method.lora_r"].high >= 20
    assert new["training.seed"].choices == [1, 2]  # choices cut to those the best trials used


def test_a_bad_combination_of_sampled_values_is_a_failed_trial_with_its_reason(tmp_path, tiny_bert, tiny_csv):
    """Each value is valid alone; together they break a cross-field rule: the trial is recorded
    failed with the config's own message, no engine starts, and the sweep goes on."""
    from tuitune import sweep
    from tuitune.history import History

    cfg = tiny_config(tiny_bert, tiny_csv, training={"early_stopping_patience": 2, "eval_steps": 2, "save_steps": 4})
    d = sweep.build_definition(cfg, [sweep.parse_param("training.eval_steps=choice:2,4"),
                                     sweep.parse_param("training.save_steps=choice:4,6")], name="combo")
    study = sweep.create_study(d, sweep.default_storage())
    study.enqueue_trial({"training.eval_steps": 4, "training.save_steps": 6})
    h = History()
    driver = sweep.Driver(h, study, d, sweep.default_storage(), slots=[None])
    assert driver._start(0) is True and not driver.active  # went on, nothing running
    s = sweep.summary(study, d, sweep.default_storage())
    assert [(t["state"], t["run_id"]) for t in s["trials"]] == [("failed", None)]
    assert "save_steps must be a multiple of training.eval_steps" in s["trials"][0]["error"]
    assert h.list_runs() == []


# -- engines: real trials --------------------------------------------------------------------------

def test_four_trial_sweep_links_runs_and_reports_the_best(tmp_path, tiny_bert, tiny_csv, tuitune_home):
    path = sweep_config(tmp_path, tiny_bert, tiny_csv)
    out = tuitune("sweep", str(path), "--param", f"{LR}=log:1e-4..5e-2", "--trials", "4", "--parallel", "2",
                  "--metric", "loss", "--seed", "0", "--pruner", "none", "--json", check_rc=0)
    s = json.loads(out.stdout)
    assert s["name"] == "tiny-sweep" and s["finished"] == 4 and s["direction"] == "minimize"
    assert [t["state"] for t in s["trials"]] == ["completed"] * 4
    runs = history_runs(tuitune_home, "tiny-sweep")
    assert sorted(r["trial"] for r in runs) == [0, 1, 2, 3] and all(r["status"] == "completed" for r in runs)
    by_trial = {t["trial"]: t for t in s["trials"]}
    for r in runs:  # each run is its trial: same parameters in the row, the config and the study
        params = json.loads(r["params"])
        assert params == by_trial[r["trial"]]["params"] and by_trial[r["trial"]]["run_id"] == r["id"]
        assert json.loads(r["config"])["training"]["learning_rate"] == pytest.approx(params[LR])
        assert final_metric(tuitune_home, r["id"], "eval_loss") == pytest.approx(by_trial[r["trial"]]["value"])
    best_run = min(runs, key=lambda r: final_metric(tuitune_home, r["id"], "eval_loss"))
    assert s["best"]["run_id"] == best_run["id"] and s["best"]["trial"] == best_run["trial"]
    assert [v for _, v in s["best_so_far"]][-1] == pytest.approx(s["best"]["value"])
    # the same from --show, `tuitune sweeps`, and a trial is an ordinary run
    shown = json.loads(tuitune("sweep", "tiny-sweep", "--show", "--json", check_rc=0).stdout)
    assert shown["best"] == s["best"]
    listed = json.loads(tuitune("sweeps", "--json", check_rc=0).stdout)
    assert [(x["name"], x["finished"], x["best_run"]) for x in listed] == [("tiny-sweep", 4, best_run["id"])]
    run = json.loads(tuitune("show", str(best_run["id"]), "--json", check_rc=0).stdout)
    assert (run["sweep"], run["trial"]) == ("tiny-sweep", best_run["trial"])
    table = tuitune("sweep", "tiny-sweep", "--show", check_rc=0).stdout
    assert f"best: trial {best_run['trial']} (run {best_run['id']})" in table
    # refine: a linked study whose range is narrower and holds the best two
    plan = json.loads(tuitune("sweep", "--refine", "tiny-sweep", "--top", "2", "--dry-run", "--json",
                              check_rc=0).stdout)
    assert plan["parent"] == "tiny-sweep"
    lo, hi = (float(x) for x in plan["params"][LR].split(":")[1].split(".."))
    top2 = sorted(s["trials"], key=lambda t: t["value"])[:2]
    assert 1e-4 <= lo < hi <= 5e-2 and (hi / lo) < (5e-2 / 1e-4)
    assert all(lo <= t["params"][LR] <= hi for t in top2)


def _wait(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_pruning_and_resume_after_the_sweep_process_is_killed(tmp_path, tiny_bert, tiny_csv, tuitune_home):
    """Trial 0 completes; the sweep process is killed -9 while trial 1 is in flight (its run ends
    crashed); --resume finishes the budget: trial 2 (a learning rate that learns nothing, set to
    run long) is pruned, trial 3 completes."""
    from tuitune import sweep
    from tuitune.history import History

    path = sweep_config(tmp_path, tiny_bert, tiny_csv, max_steps=10, eval_steps=2)
    data, _, _ = sweep.read_source(str(path), [])
    d = sweep.build_definition(data, [sweep.parse_param(f"{LR}=log:1e-9..1e-1"),
                                      sweep.parse_param("training.max_steps=int:10..400")],
                               name="rp", metric="loss", trials=3, startup_trials=1)
    study = sweep.create_study(d, sweep.default_storage())
    for lr, steps in [(3e-2, 10), (3e-2, 10), (1e-9, 400), (3e-2, 10)]:  # tried in this order
        study.enqueue_trial({LR: lr, "training.max_steps": steps})
    h = History()
    sweep.remember(h, "rp", sweep.default_storage())

    driver = subprocess.Popen(tuitune_cmd() + ["sweep", "--join", "rp"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        second = _wait(lambda: [r for r in history_runs(tuitune_home, "rp") if r["trial"] == 1], 400,
                       "trial 1 to start")[0]
        assert history_runs(tuitune_home, "rp")[0]["status"] == "completed"
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
    crashed = _wait(lambda: next((r for r in history_runs(tuitune_home, "rp") if r["trial"] == 1
                                  and r["status"] not in ("queued", "running")), None), 400, "trial 1 to end")
    assert crashed["status"] == "crashed" and "sweep process" in crashed["error"], crashed

    out = tuitune("sweep", "--resume", "rp", "--parallel", "2", "--json", check_rc=0)
    s = json.loads(out.stdout)
    states = {t["trial"]: t["state"] for t in s["trials"]}
    assert states == {0: "completed", 1: "crashed", 2: "pruned", 3: "completed"}, s["trials"]
    assert s["finished"] == 3 == s["budget"]
    runs = {r["trial"]: r for r in history_runs(tuitune_home, "rp")}
    assert [runs[n]["status"] for n in range(4)] == ["completed", "crashed", "pruned", "completed"]
    assert "pruned at step" in runs[2]["error"] and runs[2]["step"] < 400
    # a finished sweep resumes to nothing
    again = json.loads(tuitune("sweep", "--resume", "rp", "--json", check_rc=0).stdout)
    assert len(again["trials"]) == 4


def _pg_url():
    url = os.environ.get("TUITUNE_TEST_PG_URL")
    if url:
        return url, None
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("no PostgreSQL: set TUITUNE_TEST_PG_URL, or install Debian's postgresql package "
                    "(.ci/run starts a throwaway cluster)")
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tuitune-pg-"))  # not under pytest's 0700 folder: the server's user reads it
    out = subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "start", str(folder)], capture_output=True, text=True)
    if out.returncode:
        subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "stop", str(folder)], capture_output=True)
        why = (out.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"could not start a throwaway PostgreSQL: {why}")
    return out.stdout.strip(), folder


@pytest.fixture
def storage(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    url, folder = _pg_url()
    try:
        yield url
    finally:
        if folder is not None:
            subprocess.run([str(ROOT / ".ci" / "postgres.sh"), "stop", str(folder)], capture_output=True)


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"], indirect=True)
def test_two_workers_share_one_study(tmp_path, tiny_bert, tiny_csv, storage):
    """Two workers, each with its own history (two machines), share one study: together they run
    exactly the budget, each trial once; each history holds its own trials."""
    from tuitune import sweep
    from tuitune.sweep_cli import wait_for_study

    path = sweep_config(tmp_path, tiny_bert, tiny_csv, max_steps=4)
    name = f"shared-{uuid.uuid4().hex[:6]}"
    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    first = subprocess.Popen(tuitune_cmd() + ["sweep", str(path), "--param", f"{LR}=log:1e-4..1e-2",
                                              "--trials", "4", "--name", name, "--storage", storage, "--json"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TUITUNE_HOME": str(homes[0])})
    try:
        try:
            wait_for_study(name, storage, 120)
        except TuituneError:
            first.kill()
            raise AssertionError(f"the first worker made no study: {first.communicate()}") from None
        second = tuitune("sweep", "--join", name, "--storage", storage, "--json",
                         env={"TUITUNE_HOME": str(homes[1])})
        out, err = first.communicate(timeout=400)
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    study, d = sweep.load_study(name, storage)
    counted = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    assert sorted(t.state.name for t in counted) == ["COMPLETE"] * 4
    per_home = [{r["trial"]: r for r in history_runs(home, name)} for home in homes]
    assert all(per_home), "both workers ran trials"
    assert not set(per_home[0]) & set(per_home[1])  # no trial twice
    assert set(per_home[0]) | set(per_home[1]) == {t.number for t in counted}  # none lost
    for home, runs in zip(homes, per_home):
        for number, r in runs.items():
            trial = next(t for t in counted if t.number == number)
            assert r["status"] == "completed" and trial.user_attrs["run_id"] == r["id"]
            assert json.loads(r["params"]) == trial.params


# -- the Sweep view (Pilot, 80×24) -------------------------------------------------------------------

def seed_sweep(name: str = "bbc-sweep") -> dict[int, int]:
    """A finished 4-trial sweep: trials 0 and 1 are the two seeded runs, 2 was pruned, 3 ran on
    another machine (no run here). Returns {trial: run id}."""
    import optuna

    from tuitune import sweep
    from tuitune.history import History
    from ui_helpers import seed_history

    ids = list(seed_history().values())
    h = History()
    data = json.loads(h.conn.execute("SELECT config FROM runs WHERE id=?", (ids[0],)).fetchone()[0])
    d = sweep.build_definition(data, [sweep.parse_param(f"{LR}=log:1e-5..1e-3"),
                                      sweep.parse_param("method.lora_r=choice:8,16")], name=name, trials=4)
    study = sweep.create_study(d, sweep.default_storage())
    sweep.remember(h, name, sweep.default_storage())
    dists = {LR: optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
             "method.lora_r": optuna.distributions.CategoricalDistribution([8, 16])}
    runs = {0: ids[0], 1: ids[1]}
    for n, (lr, r, value, state) in enumerate([(1e-4, 8, 0.95, "COMPLETE"), (3e-4, 16, 0.85, "COMPLETE"),
                                               (1e-5, 16, None, "PRUNED"), (5e-4, 8, 0.80, "COMPLETE")]):
        attrs = {"run_id": runs.get(n), "host": "here"}
        study.add_trial(optuna.trial.create_trial(
            params={LR: lr, "method.lora_r": r}, distributions=dists, value=value,
            state=getattr(optuna.trial.TrialState, state), user_attrs=attrs))
        if n in runs:
            h.update_run(runs[n], sweep=name, trial=n, params=json.dumps({LR: lr, "method.lora_r": r}))
    h.close()
    return runs


def test_sweep_view_leaderboard_curve_importances_and_open_a_trial(tuitune_home):
    import asyncio

    from tuitune.app import make_app

    runs = seed_sweep()

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#runs")
            await _until(pilot, lambda: table.row_count == 2, "runs listed")
            assert "w: sweeps" in str(app.screen.query_one("#runs-hint").render())
            await pilot.press("w")  # the run under the cursor is a trial: its sweep opens
            await _until(pilot, lambda: type(app.screen).__name__ == "SweepScreen" and app.screen.summary,
                         "sweep loaded")
            scr = app.screen
            title = str(scr.query_one("#sw-title").render())
            assert "4/4 trials" in title and "best 0.9500: trial 0" in title
            # the title must fit its two lines at 80 columns, or the best trial is cut off
            assert len(title.splitlines()) == 2 and all(len(line) <= 78 for line in title.splitlines()), title
            board = scr.query_one("#sw-table")
            assert board.row_count == 4  # best first, the pruned one last
            assert [board.get_row_at(i)[:2] for i in range(4)] == [["0", "completed"], ["1", "completed"],
                                                                   ["3", "completed"], ["2", "pruned"]]
            assert board.get_row_at(0)[2:5] == ["0.0001", "8", "0.95"]
            assert [tuple(x) for x in scr.summary["best_so_far"]] == [(0, 0.95), (1, 0.95), (3, 0.95)]
            importance = str(scr.query_one("#sw-importance").render())
            assert "learning_rat" in importance and "lora_r" in importance and "█" in importance
            await pilot.press("down", "enter")  # trial 1: its run opens in the monitor (replay)
            await _until(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", "trial's run opened")
            assert app.screen.run_id == runs[1]
            await pilot.press("escape")
            await pilot.press("down", "enter")  # trial 3 ran on another machine: one clear message
            await _until(pilot, lambda: type(app.screen).__name__ == "MessageDialog", "message")
            await pilot.press("escape", "escape")
            await _until(pilot, lambda: type(app.screen).__name__ == "RunsScreen", "back home")
    asyncio.run(go())


def test_sweeps_list_opens_a_sweep(tuitune_home):
    import asyncio

    from tuitune.app import make_app
    from tuitune.screens.sweep import SweepsScreen

    seed_sweep("first")

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: type(app.screen).__name__ == "RunsScreen", "runs screen")
            app.push_screen(SweepsScreen())
            await _until(pilot, lambda: isinstance(app.screen, SweepsScreen)
                         and app.screen.query_one("#sweeps").row_count == 1, "sweeps listed")
            assert app.screen.query_one("#sweeps").get_row_at(0)[:4] == ["first", "4/4", "accuracy", "0.95"]
            await pilot.press("enter")
            await _until(pilot, lambda: type(app.screen).__name__ == "SweepScreen", "sweep opened")
    asyncio.run(go())


def test_wizard_marks_fields_as_searched_and_launches_a_sweep(tuitune_home, tiny_bert, tiny_csv):
    """A SPEC typed into a number field marks it searched (a bad one is flagged there); Review shows
    the search; launch asks for the trial budget, starts the sweep in the background and opens it."""
    import asyncio

    from tuitune.app import make_app
    from tuitune.screens.wizard import MethodScreen

    draft = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 4, "eval_steps": 2},
                        evaluation={"baseline": False, "on_test": False})

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: type(app.screen).__name__ == "RunsScreen", "runs screen")
            app.draft = draft
            app.push_screen(MethodScreen())
            await _until(pilot, lambda: isinstance(app.screen, MethodScreen)
                         and app.screen.query_one("#f-training-learning_rate"), "method screen")
            scr = app.screen
            scr.query_one("#f-training-learning_rate").value = "log:1e-3..1e-2"
            scr.query_one("#f-training-per_device_train_batch_size").value = "int:9..4"
            await pilot.pause(0.2)
            assert "searched: log:0.001..0.01" in str(scr.query_one("#f-training-learning_rate-msg").render())
            assert "empty range" in str(scr.query_one("#f-training-per_device_train_batch_size-msg").render())
            await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            assert isinstance(app.screen, MethodScreen)  # a bad SPEC keeps the form open
            scr.query_one("#f-training-per_device_train_batch_size").value = "8"
            await pilot.pause(0.2)
            await pilot.press("ctrl+n")
            await _until(pilot, lambda: type(app.screen).__name__ == "ReviewScreen", "review")
            yaml_text = str(app.screen.query_one("#yaml").render())
            assert "sweep:" in yaml_text and "training.learning_rate: log:1e-3..1e-2" in yaml_text
            await pilot.press("ctrl+l")
            await _until(pilot, lambda: type(app.screen).__name__ == "AskDialog", "trials asked")
            app.screen.query_one("#answer").value = "1"
            await pilot.press("enter")
            await _until(pilot, lambda: type(app.screen).__name__ == "SweepScreen", "sweep opened")
            assert [type(s).__name__ for s in app.screen_stack][-2:] == ["RunsScreen", "SweepScreen"]
            await _until(pilot, lambda: app.screen.summary and app.screen.summary["finished"] == 1,
                         "the trial to finish", timeout=400)
            s = app.screen.summary
            assert s["name"] == "tiny-sweep" and s["trials"][0]["state"] == "completed"
            assert 1e-3 <= s["trials"][0]["params"][LR] <= 1e-2
    asyncio.run(go())
    runs = history_runs(tuitune_home, "tiny-sweep")
    assert len(runs) == 1 and runs[0]["status"] == "completed"


async def _until(pilot, cond, what, timeout=30.0):
    t = time.monotonic()
    from textual.css.query import NoMatches

    while time.monotonic() - t < timeout:
        try:
            if cond():
                return
        except NoMatches:  # the screen is still composing
            pass
        await pilot.pause(0.2)
    raise AssertionError(f"timed out waiting for {what}")

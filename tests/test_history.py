"""The run history on a real SQLite file: schema, live reads from other connections, crash marking."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from tuitune import history
from tuitune.errors import TuituneError
from tuitune.history import MIGRATIONS, History, pid_alive
from tuitune.records import EvalRecord, RunRecord

CFG = {"name": "t", "task": "classification", "model": {"name_or_path": "m"}, "data": {"path": "d"},
       "method": {"name": "full"}}


def test_schema_is_wal_versioned_and_owner_only(tuitune_home):
    h = History()
    assert h.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert h.conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert oct(os.stat(h.path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(tuitune_home).st_mode & 0o777) == "0o700"
    tables = {r[0] for r in h.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "latest_metrics", "evaluations", "system", "events"} <= tables


def test_reopening_does_not_migrate_again_and_an_old_file_gets_only_the_new_migrations(tmp_path, monkeypatch):
    db = tmp_path / "history.db"
    first = History(db)
    assert first.migrations_applied == len(MIGRATIONS)
    rid = first.create_run(CFG)
    first.close()
    again = History(db)
    assert again.migrations_applied == 0
    assert again.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert [r.id for r in again.list_runs()] == [rid]
    again.close()
    # an upgrade adds one migration: an existing file runs that one only, once
    monkeypatch.setattr(history, "MIGRATIONS", MIGRATIONS + ["INSERT INTO events (run_id, time, kind) VALUES (1, 0, 'upgraded')"])
    upgraded = History(db)
    assert upgraded.migrations_applied == 1
    upgraded.close()
    reopened = History(db)
    assert reopened.migrations_applied == 0
    assert [e["kind"] for e in reopened.events(rid)].count("upgraded") == 1
    assert [r.id for r in reopened.list_runs()] == [rid]


def test_status_check_constraint():
    h = History()
    rid = h.create_run(CFG)
    with pytest.raises((sqlite3.IntegrityError, TuituneError), match="CHECK constraint"):
        h.conn.execute("UPDATE runs SET status='bogus' WHERE id=?", (rid,))


def test_metrics_are_read_live_and_incrementally_by_another_connection():
    writer, reader = History(), History()
    rid = writer.create_run(CFG)
    writer.set_status(rid, "running")
    writer.update_run(rid, pid=os.getpid())
    writer.log_metrics(rid, 1, {"train/loss": 2.0, "train/learning_rate": 1e-3})
    rows = reader.metrics(rid)
    assert [(r["key"], r["step"]) for r in rows] == [("train/loss", 1), ("train/learning_rate", 1)]
    writer.log_metrics(rid, 2, {"train/loss": 1.5})
    new = reader.metrics(rid, after_rowid=rows[-1]["rowid"])
    assert [(r["key"], r["step"], r["value"]) for r in new] == [("train/loss", 2, 1.5)]
    assert reader.latest(rid)["train/loss"] == 1.5
    assert reader.get_run(rid).step == 2


def test_evaluations_events_and_system_samples():
    h = History()
    rid = h.create_run(CFG)
    h.log_evaluation(rid, "baseline", 0, {"eval_accuracy": 0.2})
    h.log_evaluation(rid, "final", 10, {"eval_accuracy": 0.9})
    evals = h.evaluations(rid)
    assert all(isinstance(e, EvalRecord) for e in evals)
    assert [(e.run_id, e.phase, e.step, e.metrics) for e in evals] == [
        (rid, "baseline", 0, {"eval_accuracy": 0.2}), (rid, "final", 10, {"eval_accuracy": 0.9})]
    assert [e["message"] for e in h.events(rid) if e["kind"] == "eval"] == [
        "baseline: accuracy 0.2", "final: accuracy 0.9"]
    h.log_system(rid, {"cpu_percent": 50.0, "ram_used": 1, "ram_total": 2, "gpus": []}, step=3)
    [s] = h.system(rid)
    assert s["gpus"] == [] and s["step"] == 3
    h.log_event(rid, "checkpoint", "checkpoint-10", step=10)
    assert h.events(rid)[-1]["message"] == "checkpoint-10"


def test_dead_engine_is_marked_crashed_by_whoever_looks_next():
    h = History()
    rid = h.create_run(CFG)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    h.set_status(rid, "running")
    h.update_run(rid, pid=proc.pid)
    assert not pid_alive(proc.pid)
    run = History().get_run(rid)
    assert isinstance(run, RunRecord)
    assert run.status == "crashed" and "tuitune resume" in run.error
    assert h.events(rid)[-1]["kind"] == "crashed"


def test_stale_heartbeat_is_a_crash_even_with_a_live_pid():
    h = History()
    rid = h.create_run(CFG)
    h.set_status(rid, "running")
    h.update_run(rid, pid=os.getpid(), heartbeat_at=int(time.time() * 1000) - 3_600_000)
    assert h.get_run(rid).status == "crashed"


def test_resume_truncation_drops_steps_after_the_checkpoint():
    h = History()
    rid = h.create_run(CFG)
    for step in range(1, 8):
        h.log_metrics(rid, step, {"train/loss": 1.0 / step})
    h.truncate_after(rid, 4)
    assert [m["step"] for m in h.metrics(rid, "train/loss")] == [1, 2, 3, 4]
    assert h.latest(rid)["train/loss"] == pytest.approx(0.25)


def test_delete_refuses_live_runs_and_removes_everything_else():
    h = History()
    rid = h.create_run(CFG)
    h.set_status(rid, "running")
    h.update_run(rid, pid=os.getpid())
    with pytest.raises(TuituneError, match="stop it first"):
        h.delete_run(rid)
    h.set_status(rid, "completed")
    h.log_metrics(rid, 1, {"train/loss": 1.0})
    h.delete_run(rid)
    assert h.metrics(rid) == []
    with pytest.raises(TuituneError, match="no run"):
        h.get_run(rid)


def test_corrupt_database_is_refused_not_overwritten(tmp_path):
    bad = tmp_path / "history.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TuituneError, match="corrupt; tuitune will not overwrite it"):
        History(bad)
    assert bad.read_bytes() == b"this is not sqlite" * 100

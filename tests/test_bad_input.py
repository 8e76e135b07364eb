"""Bad input, one case at a time (issue 5): every case through the real `tuitune` CLI.

Each case asserts the one-line message that names the fix, a non-zero exit, no traceback, and that
the history is intact afterwards: a completed run seeded before the case is unchanged, the database
passes `PRAGMA integrity_check`, and a corrupt database is left byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from helpers_faults import cli, write_config
from tuitune.history import History

TABLES = ("runs", "metrics", "latest_metrics", "evaluations", "system", "events")


def seed_history() -> int:
    """A finished run with metrics, evaluations and events: what must survive every bad input."""
    h = History()
    cfg = {"name": "kept", "task": "classification", "model": {"name_or_path": "m"}, "method": {"name": "full"},
           "data": {"path": "d"}}
    run_id = h.create_run(cfg)
    h.set_status(run_id, "running")
    for step in range(1, 6):
        h.log_metrics(run_id, step, {"train/loss": 1.0 / step})
    h.log_evaluation(run_id, "final", 5, {"eval_accuracy": 0.9})
    h.set_status(run_id, "completed")
    h.close()
    return run_id


def snapshot(db: Path, run_id: int) -> dict:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {t: conn.execute(f"SELECT * FROM {t} WHERE {'id' if t == 'runs' else 'run_id'}=?",
                                (run_id,)).fetchall() for t in TABLES}
    finally:
        conn.close()


def no_traceback(r) -> None:
    text = r.stdout + r.stderr
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]


# -- the cases ----------------------------------------------------------------------------------------
# Each: (id, kind, builder) where builder(ctx) returns (args, env, expected message part).
# kind "config": refused before any engine starts (exit 2, "tuitune: error: ..." on one stderr line).
# kind "engine": the run starts and fails (exit 1, run `failed` with the message in the history).

def _cfg(ctx, **sections):
    return write_config(ctx["tmp"], tiny_config(ctx["model"], ctx["data"], **sections))


def _data_file(ctx, name: str, content: bytes) -> Path:
    p = ctx["tmp"] / name
    p.write_bytes(content)
    return p


CONFIG_CASES = {
    "corrupt-yaml": lambda c: (["run", _text(c, "bad.yaml", "model: [unclosed\n  data: {\n")], "is not valid YAML at line"),
    "empty-yaml": lambda c: (["run", _text(c, "empty.yaml", "\n")], "is empty"),
    "missing-config-file": lambda c: (["run", c["tmp"] / "nope.yaml"], "config file not found"),
    "unknown-key": lambda c: (["run", _cfg(c, training={"learnig_rate": 1e-3})],
                              "unknown key 'training.learnig_rate'"),
    "lr-zero": lambda c: (["run", _cfg(c), "--set", "training.learning_rate=0"],
                          "training.learning_rate: must be greater than 0"),
    "lr-negative": lambda c: (["run", _cfg(c), "--set", "training.learning_rate=-3e-5"],
                              "training.learning_rate: must be greater than 0"),
    "batch-zero": lambda c: (["run", _cfg(c), "--set", "training.per_device_train_batch_size=0"],
                             "training.per_device_train_batch_size: must be greater than 0"),
    "batch-negative": lambda c: (["run", _cfg(c), "--set", "training.per_device_train_batch_size=-8"],
                                 "training.per_device_train_batch_size: must be greater than 0"),
    "epochs-zero": lambda c: (["run", _cfg(c), "--set", "training.num_train_epochs=0"],
                              "training.num_train_epochs: must be greater than 0"),
    "max-steps-zero": lambda c: (["run", _cfg(c), "--set", "training.max_steps=0"], "max_steps must be > 0"),
    "bad-set-syntax": lambda c: (["run", _cfg(c), "--set", "training.learning_rate"], "--set needs key=value"),
    "4bit-with-full-finetuning": lambda c: (["run", _cfg(c, quantization={"load_in": "4bit"})],
                                            "cannot be trained with method full"),
    "qlora-without-4bit": lambda c: (["run", _cfg(c, method={"name": "qlora"})],
                                     "method qlora needs quantization.load_in: 4bit"),
    "metric-the-task-does-not-report": lambda c: (["run", _cfg(c, training={"metric_for_best_model": "bleu"})],
                                                  "'bleu' is not a metric task classification reports"),
    "resume-completed-run": lambda c: (["resume", c["seeded"]], "has completed"),
    "stop-finished-run": lambda c: (["stop", c["seeded"]], "is not live"),
    "unknown-run": lambda c: (["show", "99"], "no run 99 in the history"),
}


def _text(ctx, name: str, text: str) -> Path:
    p = ctx["tmp"] / name
    p.write_text(text, encoding="utf-8")
    return p


def _shadow_bitsandbytes(ctx) -> dict:
    """bitsandbytes that fails to import, as on a machine where it has no support."""
    d = ctx["tmp"] / "shadow" / "bitsandbytes"
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("raise ImportError('bitsandbytes was compiled without support for this machine')\n")
    return {"PYTHONPATH": str(d.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}


ENGINE_CASES = {
    "unknown-model-name": lambda c: (["run", _cfg(c, model={"name_or_path": "no-such-org/no-such-model"})], {},
                                     "not found locally or on the hub"),
    "missing-model-path": lambda c: (["run", _cfg(c, model={"name_or_path": str(c["tmp"] / "no-model")})], {},
                                     "does not exist"),
    "dataset-missing": lambda c: (["run", _cfg(c, data={"path": str(c["tmp"] / "nope.csv")})], {},
                                  "does not exist"),
    "dataset-empty": lambda c: (["run", _cfg(c, data={"path": str(_data_file(c, "empty.csv", b""))})], {},
                                "is empty"),
    "dataset-not-utf8": lambda c: (["run", _cfg(c, data={"path": str(_data_file(
        c, "latin1.csv", "text,label\n" .encode() + "caf\xe9 cr\xe8me,positive\n".encode("latin-1") * 40))})], {},
        "is not UTF-8"),
    "dataset-lacks-column": lambda c: (["run", _cfg(c, data={"text_column": "review"})], {},
                                       "text column 'review' not in dataset: columns are text, label"),
    "labels-out-of-range": lambda c: (["run", _cfg(c, data={"path": str(_data_file(
        c, "neg.csv", b"text,label\n" + b"".join(b"row %d,%d\n" % (i, i % 3 - 1) for i in range(40))))})], {},
        "labels out of range"),
    "4bit-without-bitsandbytes": lambda c: (["run", _cfg(c, method={"name": "lora"}, quantization={"load_in": "4bit"})],
                                            _shadow_bitsandbytes(c), "4bit loading needs bitsandbytes"),
}


@pytest.fixture
def ctx(tmp_path, tiny_bert, tiny_csv, tuitune_home):
    seeded = seed_history()
    return {"tmp": tmp_path, "model": tiny_bert, "data": tiny_csv, "seeded": seeded,
            "db": tuitune_home / "history.db", "before": snapshot(tuitune_home / "history.db", seeded)}


def assert_history_intact(ctx, *, runs: int) -> None:
    assert snapshot(ctx["db"], ctx["seeded"]) == ctx["before"]
    h = History()
    assert len(h.list_runs()) == runs
    h.close()


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_refused_before_training(ctx, case):
    args, expected = CONFIG_CASES[case](ctx)
    r = cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    no_traceback(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuitune: error: "), r.stderr
    assert expected in lines[0]
    assert_history_intact(ctx, runs=1)


@pytest.mark.parametrize("case", list(ENGINE_CASES))
def test_run_fails_with_one_line(ctx, case):
    args, env, expected = ENGINE_CASES[case](ctx)
    r = cli(*args, "--json", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    no_traceback(r)
    out = json.loads(r.stdout)
    assert out["status"] == "failed"
    assert expected in out["error"] and "\n" not in out["error"], out["error"]
    assert "Traceback" not in Path(out["log"]).read_text(), "a known mistake is not an unexpected error"
    assert_history_intact(ctx, runs=2)


def test_disk_full_while_checkpointing(ctx):
    """The kernel refuses the checkpoint write (RLIMIT_FSIZE below the model's size): the run fails
    with the disk-full message, the half-written checkpoint is never offered for resume."""
    cfg = _cfg(ctx, training={"max_steps": 4, "save_steps": 2, "eval_steps": 2})
    limit = 2 * 1024 * 1024  # the tiny model's weights are ~4 MB; the history stays far below

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = cli("run", cfg, "--json", preexec_fn=small_files)
    assert r.returncode == 1, r.stdout + r.stderr
    no_traceback(r)
    out = json.loads(r.stdout)
    assert out["status"] == "failed"
    assert out["error"].startswith("disk full while writing"), out["error"]
    assert_history_intact(ctx, runs=2)
    r = cli("resume", out["id"])
    assert r.returncode == 2 and "has no checkpoint to resume from" in r.stderr


def test_fill_mask_query_without_mask(ctx, tiny_bert):
    """A masked-LM run's saved model (the files a completed run leaves), asked without [MASK]."""
    h = History()
    cfg = tiny_config(tiny_bert, ctx["data"], task="mlm")
    cfg["data"]["label_column"] = None
    from tuitune import paths
    from tuitune.config import validate_config

    run_id = h.create_run(validate_config(cfg).model_dump(mode="json"), run_dir_for=paths.run_dir)
    h.set_status(run_id, "completed")
    h.close()
    model_dir = paths.run_dir(run_id) / "model"
    shutil.copytree(tiny_bert, model_dir)
    (model_dir / "tuitune.json").write_text(json.dumps({"task": "mlm", "label_names": [], "base_model": str(tiny_bert),
                                                         "method": "full", "peft": False}))
    r = cli("predict", run_id, "This is a great movie!")
    assert r.returncode == 2, r.stdout + r.stderr
    no_traceback(r)
    assert r.stderr.strip() == 'tuitune: error: text has no [MASK]: write e.g. "This is a [MASK] movie!"'
    assert_history_intact(ctx, runs=2)


# -- the history database itself ---------------------------------------------------------------------

def test_history_locked(ctx):
    holder = sqlite3.connect(ctx["db"], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        r = cli("run", _cfg(ctx), env={"TUITUNE_DB_TIMEOUT": "1"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 2
    no_traceback(r)
    assert r.stderr.strip() == (f"tuitune: error: history database {ctx['db']} is locked by another program "
                                "(not tuitune?): close it and retry")
    assert_history_intact(ctx, runs=1)


def test_history_read_only(ctx):
    home = ctx["db"].parent
    wrap: list[str] = []
    if os.geteuid() == 0:  # root ignores permission bits unless it gives up that capability
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file read-only for us")
        caps = "-dac_override,-dac_read_search,-fowner"
        wrap = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, "--"]
    sqlite3.connect(ctx["db"]).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    for extra in ("history.db-wal", "history.db-shm"):
        (home / extra).unlink(missing_ok=True)
    modes = {p: p.stat().st_mode for p in (home, ctx["db"])}
    os.chmod(ctx["db"], 0o400)
    os.chmod(home, 0o500)
    try:
        import subprocess

        from conftest import tuitune_cmd

        r = subprocess.run(wrap + tuitune_cmd() + ["run", str(_cfg(ctx))], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
    finally:
        for p, m in modes.items():
            os.chmod(p, m)
    assert r.returncode == 2, r.stdout + r.stderr
    no_traceback(r)
    line = r.stderr.strip()
    assert "\n" not in line and f"history database {ctx['db']} cannot be written" in line, line
    assert "check its permissions" in line
    assert_history_intact(ctx, runs=1)


@pytest.mark.parametrize("damage", ["garbage", "torn-pages"])
def test_history_corrupt_is_never_overwritten(ctx, damage):
    db = ctx["db"]
    sqlite3.connect(db).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    if damage == "garbage":
        db.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    else:  # a valid header, scribbled pages (a disk error or a bad copy)
        raw = bytearray(db.read_bytes())
        raw[4096:] = bytes((i * 7 + 3) % 256 for i in range(len(raw) - 4096))
        db.write_bytes(bytes(raw))
    before = db.read_bytes()
    for args in (["runs"], ["run", str(_cfg(ctx))], ["show", "1"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout + r.stderr)
        no_traceback(r)
        line = r.stderr.strip()
        assert "\n" not in line and "is corrupt; tuitune will not overwrite it" in line, line
        assert f"mv {db} {db}.broken" in line and ".recover" in line
    assert db.read_bytes() == before, "a corrupt history is left exactly as it was"

"""The run history: one SQLite database, the single source of truth for live and past runs.

The engine writes to it while it trains; the CLI and the UI (several at once) read it. The live
view and the replay of a finished run read the same tables through the same calls.

Schema (after MLflow's): `runs` (status CHECK, millisecond timestamps), a long `metrics` table
(run, key, step, time, value) plus `latest_metrics` for fast listings, `evaluations` (baseline,
periodic, final, test), `system` samples, and `events`. WAL mode and a busy timeout let several
processes read and write at once. Schema changes go through `MIGRATIONS` (PRAGMA user_version).
Reads hand out typed records (`tuitune.records`): `get_run` a `RunRecord`, `evaluations` `EvalRecord`s.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from tuitune.errors import TuituneError
from tuitune.formatting import real_metrics
from tuitune.records import LIVE, STATUSES, EvalRecord, RunRecord
from tuitune.safety import scrub, scrub_obj

HEARTBEAT_STALE_S = 60.0  # a live run whose engine has not written for this long has crashed
QUEUED_STALE_S = 120.0


def now_ms() -> int:
    return int(time.time() * 1000)


MIGRATIONS: list[str] = [
    # 1: the initial schema
    f"""
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({", ".join(repr(s) for s in STATUSES[:6])})),
        task TEXT, model TEXT, method TEXT, dataset TEXT,
        config TEXT NOT NULL,
        pid INTEGER, host TEXT,
        created_at INTEGER NOT NULL, started_at INTEGER, ended_at INTEGER, heartbeat_at INTEGER,
        run_dir TEXT,
        step INTEGER DEFAULT 0, max_steps INTEGER,
        main_metric TEXT, main_value REAL, baseline_value REAL,
        trainable_params INTEGER, total_params INTEGER,
        error TEXT,
        stop_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL, step INTEGER NOT NULL, time INTEGER NOT NULL, value REAL
    );
    CREATE INDEX metrics_run ON metrics(run_id, key, step);
    CREATE TABLE latest_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL, step INTEGER NOT NULL, time INTEGER NOT NULL, value REAL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase TEXT NOT NULL, step INTEGER NOT NULL, time INTEGER NOT NULL, metrics TEXT NOT NULL
    );
    CREATE INDEX evaluations_run ON evaluations(run_id);
    CREATE TABLE system (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        time INTEGER NOT NULL, step INTEGER,
        cpu_percent REAL, ram_used INTEGER, ram_total INTEGER, gpus TEXT
    );
    CREATE INDEX system_run ON system(run_id, time);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        time INTEGER NOT NULL, step INTEGER, kind TEXT NOT NULL, message TEXT
    );
    CREATE INDEX events_run ON events(run_id);
    """,
    # 2: evaluation depth (issue 9) — per-class report and confusion matrix per evaluation, the
    # misclassified evaluation rows, probe answers, and what a run cost
    """
    CREATE TABLE class_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase TEXT NOT NULL, step INTEGER NOT NULL, time INTEGER NOT NULL,
        labels TEXT NOT NULL, report TEXT NOT NULL, matrix TEXT NOT NULL
    );
    CREATE INDEX class_reports_run ON class_reports(run_id, phase);
    CREATE TABLE eval_errors (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase TEXT NOT NULL, step INTEGER NOT NULL, row INTEGER NOT NULL,
        text TEXT, true_label TEXT NOT NULL, pred_label TEXT NOT NULL, confidence REAL
    );
    CREATE INDEX eval_errors_run ON eval_errors(run_id);
    CREATE TABLE probes (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase TEXT NOT NULL, step INTEGER NOT NULL, time INTEGER NOT NULL,
        idx INTEGER NOT NULL, input TEXT NOT NULL, answer TEXT, detail TEXT
    );
    CREATE INDEX probes_run ON probes(run_id, step);
    ALTER TABLE runs ADD COLUMN wall_time_s REAL;
    ALTER TABLE runs ADD COLUMN train_time_s REAL;
    ALTER TABLE runs ADD COLUMN peak_ram_bytes INTEGER;
    ALTER TABLE runs ADD COLUMN peak_gpu_bytes INTEGER;
    ALTER TABLE runs ADD COLUMN tokens_per_s REAL
    """,
    # 3: compressed variants of a run's model (`tuitune compress`): one row per variant per compress call
    """
    CREATE TABLE compressions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        batch INTEGER NOT NULL,
        variant TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'building', 'measuring', 'done', 'failed', 'interrupted')),
        reason TEXT, path TEXT, recover_steps INTEGER NOT NULL DEFAULT 0, pid INTEGER,
        size_bytes INTEGER, latency_p50_ms REAL, latency_p95_ms REAL, throughput REAL, peak_rss INTEGER,
        metrics TEXT, info TEXT,
        time INTEGER NOT NULL
    );
    CREATE INDEX compressions_run ON compressions(run_id, batch);
    """,
    # 4: hyperparameter sweeps. A trial is a run that knows its sweep, trial number and sampled
    # parameters; a trial the pruner cut short ends as `pruned`. SQLite cannot alter a CHECK, so
    # `runs` is rebuilt (SQLite's 12-step recipe; `_migrate` turns foreign keys off around it).
    f"""
    CREATE TABLE runs_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
        task TEXT, model TEXT, method TEXT, dataset TEXT,
        config TEXT NOT NULL,
        pid INTEGER, host TEXT,
        created_at INTEGER NOT NULL, started_at INTEGER, ended_at INTEGER, heartbeat_at INTEGER,
        run_dir TEXT,
        step INTEGER DEFAULT 0, max_steps INTEGER,
        main_metric TEXT, main_value REAL, baseline_value REAL,
        trainable_params INTEGER, total_params INTEGER,
        error TEXT,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        wall_time_s REAL, train_time_s REAL, peak_ram_bytes INTEGER, peak_gpu_bytes INTEGER, tokens_per_s REAL,
        sweep TEXT, trial INTEGER, params TEXT
    );
    INSERT INTO runs_new (id, name, status, task, model, method, dataset, config, pid, host, created_at,
        started_at, ended_at, heartbeat_at, run_dir, step, max_steps, main_metric, main_value, baseline_value,
        trainable_params, total_params, error, stop_requested,
        wall_time_s, train_time_s, peak_ram_bytes, peak_gpu_bytes, tokens_per_s)
    SELECT id, name, status, task, model, method, dataset, config, pid, host, created_at,
        started_at, ended_at, heartbeat_at, run_dir, step, max_steps, main_metric, main_value, baseline_value,
        trainable_params, total_params, error, stop_requested,
        wall_time_s, train_time_s, peak_ram_bytes, peak_gpu_bytes, tokens_per_s FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_new RENAME TO runs;
    CREATE INDEX runs_sweep ON runs(sweep, trial);
    CREATE TABLE sweeps (
        name TEXT PRIMARY KEY,
        storage TEXT NOT NULL,
        parent TEXT,
        created_at INTEGER NOT NULL,
        pid INTEGER, host TEXT
    );
    """,
]
COMPRESSION_LIVE = ("pending", "building", "measuring")

# Tables with a run's rows, besides `runs` itself (deleting or truncating a run goes through these).
RUN_TABLES = ("metrics", "latest_metrics", "evaluations", "system", "events", "class_reports", "eval_errors", "probes",
              "compressions")
# Of those, the ones with a `step` column a resume truncates after its checkpoint.
STEP_TABLES = ("metrics", "evaluations", "events", "system", "class_reports", "eval_errors", "probes")


def pid_alive(pid: Optional[int]) -> bool:
    """True if a process with this pid runs (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Connection:
    """A sqlite3 connection whose every call turns a database error (locked, read-only, corrupt,
    disk full) into a one-line `TuituneError` that says how to recover, reads included."""

    def __init__(self, conn: sqlite3.Connection, explain):
        self._conn = conn
        self._explain = explain

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.DatabaseError as err:
            raise self._explain(err) from None

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        try:
            return self._conn.executemany(sql, rows)
        except sqlite3.DatabaseError as err:
            raise self._explain(err) from None

    def __enter__(self):
        self._conn.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            return self._conn.__exit__(*exc)
        except sqlite3.DatabaseError as err:
            raise self._explain(err) from None

    def __getattr__(self, name):
        return getattr(self._conn, name)


class History:
    """A connection to the history database. One per process (or thread)."""

    def __init__(self, path: Optional[Path] = None, *, timeout_s: Optional[float] = None):
        from tuitune import paths

        if timeout_s is None:  # how long to wait for another writer before "locked"
            timeout_s = float(os.environ.get("TUITUNE_DB_TIMEOUT") or 30.0)
        self.path = Path(path) if path else paths.db_path()
        self.migrations_applied = 0  # how many schema migrations this connection ran (0: up to date)
        new = not self.path.exists()
        try:
            raw = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            raw.row_factory = sqlite3.Row
            self.conn = _Connection(raw, self._explain)
            if new:
                os.chmod(self.path, 0o600)
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise self._explain(err) from None

    # -- opening ------------------------------------------------------------------------------
    def _explain(self, err: sqlite3.Error) -> TuituneError:
        msg = str(err)
        p = self.path
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return TuituneError(
                f"history database {p} is corrupt; tuitune will not overwrite it: move it aside "
                f"(mv {p} {p}.broken) to start a new history, or recover rows with `sqlite3 {p} .recover`"
            )
        if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
            return TuituneError(
                f"history database {p} cannot be written ({msg}): check its permissions and free disk, "
                "or set TUITUNE_HOME to a writable folder"
            )
        if "full" in msg:
            return TuituneError(f"disk full writing the history database {p}: free space and retry")
        if "locked" in msg or "busy" in msg:
            return TuituneError(
                f"history database {p} is locked by another program (not tuitune?): close it and retry"
            )
        return TuituneError(f"history database {p}: {msg}")

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise TuituneError(
                f"history database {self.path} was written by a newer tuitune (schema {version}): upgrade tuitune"
            )
        if version == len(MIGRATIONS):
            return
        # Off while tables are rebuilt (a DROP of `runs` would otherwise cascade to every metric);
        # the pragma is a no-op inside a transaction, so it goes first, and the keys are checked
        # before the commit.
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for i in range(version, len(MIGRATIONS)):
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
            broken = self.conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise TuituneError(f"history database {self.path}: migration left {len(broken)} dangling rows")
            self.conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
            self.conn.execute("COMMIT")
            self.migrations_applied = len(MIGRATIONS) - version
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        finally:
            self.conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.conn.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, tuple(params))
        except sqlite3.OperationalError as err:
            raise self._explain(err) from None

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], *, run_dir_for=None) -> int:
        """Insert a queued run; returns its id. `config` is the validated config as a dict."""
        cur = self._write(
            "INSERT INTO runs (name, status, task, model, method, dataset, config, created_at, host) "
            "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
            (
                scrub(config.get("name")), config.get("task"), scrub(config["model"]["name_or_path"]),
                config["method"]["name"], scrub(config["data"]["path"]), json.dumps(scrub_obj(config)),
                now_ms(), socket.gethostname(),
            ),
        )
        run_id = int(cur.lastrowid)
        if run_dir_for is not None:
            self.update_run(run_id, run_dir=str(run_dir_for(run_id)))
        return run_id

    def update_run(self, run_id: int, **fields: Any) -> None:
        if not fields:
            return
        for key in ("config", "error"):  # never store a Hugging Face token
            if isinstance(fields.get(key), str):
                fields[key] = scrub(fields[key])
        cols = ", ".join(f"{k}=?" for k in fields)
        self._write(f"UPDATE runs SET {cols} WHERE id=?", (*fields.values(), run_id))

    def set_status(self, run_id: int, status: str, *, error: Optional[str] = None) -> None:
        assert status in STATUSES, status
        fields: dict[str, Any] = {"status": status, "heartbeat_at": now_ms()}
        if status == "running":
            fields["started_at"] = now_ms()
            fields["ended_at"] = None
            fields["error"] = None
            fields["stop_requested"] = 0
        elif status not in LIVE:
            fields["ended_at"] = now_ms()
        if error is not None:
            fields["error"] = error
        self.update_run(run_id, **fields)
        self.log_event(run_id, status if status != "running" else "started", error)

    def heartbeat(self, run_id: int, step: Optional[int] = None) -> None:
        if step is None:
            self._write("UPDATE runs SET heartbeat_at=? WHERE id=?", (now_ms(), run_id))
        else:
            self._write("UPDATE runs SET heartbeat_at=?, step=MAX(COALESCE(step, 0), ?) WHERE id=?",
                        (now_ms(), step, run_id))

    def request_stop(self, run_id: int) -> None:
        self._write("UPDATE runs SET stop_requested=1 WHERE id=?", (run_id,))

    def stop_requested(self, run_id: int) -> bool:
        row = self.conn.execute("SELECT stop_requested FROM runs WHERE id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def get_run(self, run_id: int | str) -> RunRecord:
        try:
            rid = int(run_id)
        except (TypeError, ValueError):
            raise TuituneError(f"run id must be a number (see `tuitune runs`), got {run_id!r}") from None
        self.refresh_liveness(rid)
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (rid,)).fetchone()
        if row is None:
            raise TuituneError(f"no run {rid} in the history: `tuitune runs` lists them")
        return RunRecord.from_row(row)

    def list_runs(self, *, status: Optional[str] = None, limit: int = 1000) -> list[RunRecord]:
        self.refresh_liveness()
        sql, params = "SELECT * FROM runs", []
        if status:
            sql += " WHERE status=?"
            params.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [RunRecord.from_row(r) for r in self.conn.execute(sql, params)]

    def refresh_liveness(self, run_id: Optional[int] = None) -> list[int]:
        """Mark live runs whose engine is gone as crashed. Whoever looks next does it."""
        sql = "SELECT id, status, pid, host, heartbeat_at, created_at FROM runs WHERE status IN ('queued','running')"
        params: tuple = ()
        if run_id is not None:
            sql += " AND id=?"
            params = (run_id,)
        crashed = []
        host = socket.gethostname()
        t = now_ms()
        for r in self.conn.execute(sql, params).fetchall():
            last = r["heartbeat_at"] or r["created_at"]
            stale = (t - last) / 1000.0 > (HEARTBEAT_STALE_S if r["status"] == "running" else QUEUED_STALE_S)
            dead = r["host"] == host and r["pid"] is not None and not pid_alive(r["pid"])
            if dead or stale:
                why = "engine process is gone" if dead else f"no heartbeat for {int((t - last) / 1000)} s"
                cur = self._write(
                    "UPDATE runs SET status='crashed', ended_at=?, error=? WHERE id=? AND status IN ('queued','running')",
                    (t, f"crashed: {why}; `tuitune resume {r['id']}` continues from the last checkpoint", r["id"]),
                )
                if cur.rowcount:
                    self.log_event(r["id"], "crashed", why)
                    crashed.append(r["id"])
        return crashed

    def delete_run(self, run_id: int) -> None:
        run = self.get_run(run_id)
        if run.live:
            raise TuituneError(f"run {run_id} is {run.status}: stop it first (`tuitune stop {run_id}`)")
        with self.conn:
            self.conn.execute("BEGIN")
            for table in RUN_TABLES:
                self.conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            self.conn.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # -- metrics, evaluations, system, events -------------------------------------------------
    def log_metrics(self, run_id: int, step: int, values: dict[str, float], t: Optional[int] = None) -> None:
        t = t or now_ms()
        rows = [(run_id, k, int(step), t, float(v)) for k, v in values.items() if isinstance(v, (int, float))]
        if not rows:
            return
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT INTO metrics (run_id, key, step, time, value) VALUES (?,?,?,?,?)", rows)
                self.conn.executemany(
                    "INSERT INTO latest_metrics (run_id, key, step, time, value) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(run_id, key) DO UPDATE SET step=excluded.step, time=excluded.time, value=excluded.value",
                    rows,
                )
                self.conn.execute("UPDATE runs SET step=MAX(COALESCE(step,0), ?), heartbeat_at=? WHERE id=?",
                                  (int(step), t, run_id))
        except sqlite3.OperationalError as err:
            raise self._explain(err) from None

    def truncate_after(self, run_id: int, step: int) -> None:
        """Drop what a run logged after `step` (before resuming from the checkpoint at `step`),
        so the resumed run's timeline has no duplicated steps."""
        with self.conn:
            self.conn.execute("BEGIN")
            for table in STEP_TABLES:
                self.conn.execute(f"DELETE FROM {table} WHERE run_id=? AND step>?", (run_id, step))
            self.conn.execute("DELETE FROM latest_metrics WHERE run_id=?", (run_id,))
            self.conn.execute(
                "INSERT INTO latest_metrics (run_id, key, step, time, value) "
                "SELECT run_id, key, step, time, value FROM metrics m WHERE run_id=? AND rowid = "
                "(SELECT MAX(rowid) FROM metrics WHERE run_id=m.run_id AND key=m.key)", (run_id,))
            self.conn.execute("UPDATE runs SET step=? WHERE id=?", (step, run_id))

    def metrics(self, run_id: int, key: Optional[str] = None, *, after_rowid: int = 0) -> list[dict[str, Any]]:
        """Metric rows in write order; pass the last seen `rowid` as `after_rowid` to read only new ones."""
        sql = "SELECT rowid, key, step, time, value FROM metrics WHERE run_id=? AND rowid>?"
        params: list[Any] = [run_id, after_rowid]
        if key:
            sql += " AND key=?"
            params.append(key)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY rowid", params)]

    def latest(self, run_id: int) -> dict[str, float]:
        return {r["key"]: r["value"] for r in
                self.conn.execute("SELECT key, value FROM latest_metrics WHERE run_id=?", (run_id,))}

    def log_evaluation(self, run_id: int, phase: str, step: int, metrics: dict[str, float]) -> None:
        self._write("INSERT INTO evaluations (run_id, phase, step, time, metrics) VALUES (?,?,?,?,?)",
                    (run_id, phase, int(step), now_ms(), json.dumps(metrics)))
        shown = ", ".join(f"{k.split('_', 1)[-1]} {v:.4g}" for k, v in real_metrics(metrics).items())
        self.log_event(run_id, "eval", f"{phase}: {shown}", step=int(step))

    def evaluations(self, run_id: int, phase: Optional[str] = None) -> list[EvalRecord]:
        sql, params = "SELECT run_id, phase, step, time, metrics FROM evaluations WHERE run_id=?", [run_id]
        if phase:
            sql += " AND phase=?"
            params.append(phase)
        return [EvalRecord.from_row(r) for r in self.conn.execute(sql + " ORDER BY id", params)]

    def log_system(self, run_id: int, sample: dict[str, Any], step: Optional[int] = None) -> None:
        self._write(
            "INSERT INTO system (run_id, time, step, cpu_percent, ram_used, ram_total, gpus) VALUES (?,?,?,?,?,?,?)",
            (run_id, sample.get("time") or now_ms(), step, sample.get("cpu_percent"), sample.get("ram_used"),
             sample.get("ram_total"), json.dumps(sample.get("gpus", []))),
        )

    def system(self, run_id: int, *, after_time: int = 0) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM system WHERE run_id=? AND time>? ORDER BY time",
                                   (run_id, after_time)):
            d = dict(r)
            d["gpus"] = json.loads(d["gpus"] or "[]")
            out.append(d)
        return out

    def log_event(self, run_id: int, kind: str, message: Optional[str] = None, step: Optional[int] = None) -> None:
        self._write("INSERT INTO events (run_id, time, step, kind, message) VALUES (?,?,?,?,?)",
                    (run_id, now_ms(), step, kind, scrub(message)))

    def events(self, run_id: int, *, after_id: int = 0) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(
            "SELECT id, time, step, kind, message FROM events WHERE run_id=? AND id>? ORDER BY id", (run_id, after_id))]

    # -- evaluation depth: per-class report, confusion matrix, errors, probes --------------------
    def log_class_report(self, run_id: int, phase: str, step: int, labels: list[str],
                         report: dict[str, dict[str, float]], matrix: list[list[int]]) -> None:
        """A classification evaluation's per-class precision/recall/F1/support and its confusion
        matrix (rows: true label, columns: predicted), in the order of `labels`."""
        self._write("INSERT INTO class_reports (run_id, phase, step, time, labels, report, matrix) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (run_id, phase, int(step), now_ms(), json.dumps(list(labels)), json.dumps(report),
                     json.dumps(matrix)))

    def class_report(self, run_id: int, phase: Optional[str] = None) -> list[tuple[str, int, dict[str, dict]]]:
        """[(phase, step, {label: {"precision", "recall", "f1", "support"}})] in evaluation order."""
        sql, params = "SELECT phase, step, labels, report FROM class_reports WHERE run_id=?", [run_id]
        if phase:
            sql += " AND phase=?"
            params.append(phase)
        out = []
        for r in self.conn.execute(sql + " ORDER BY id", params):
            report = json.loads(r["report"])
            out.append((r["phase"], r["step"], {lab: report[lab] for lab in json.loads(r["labels"]) if lab in report}))
        return out

    def confusion(self, run_id: int, phase: str) -> Optional[dict[str, Any]]:
        """{"labels": [...], "matrix": [[int]], "step": N} of the latest evaluation of `phase`
        (rows: true label, columns: predicted); None when that phase has none."""
        r = self.conn.execute("SELECT step, labels, matrix FROM class_reports WHERE run_id=? AND phase=? "
                              "ORDER BY id DESC LIMIT 1", (run_id, phase)).fetchone()
        if r is None:
            return None
        return {"labels": json.loads(r["labels"]), "matrix": json.loads(r["matrix"]), "step": r["step"]}

    def confusions(self, run_id: int) -> list[dict[str, Any]]:
        """Every stored confusion matrix of a run, in evaluation order, with its phase and step."""
        return [{"phase": r["phase"], "step": r["step"], "labels": json.loads(r["labels"]),
                 "matrix": json.loads(r["matrix"])}
                for r in self.conn.execute("SELECT phase, step, labels, matrix FROM class_reports "
                                           "WHERE run_id=? ORDER BY id", (run_id,))]

    def log_errors(self, run_id: int, phase: str, step: int, errors: list[dict[str, Any]]) -> None:
        """The misclassified evaluation rows: {row, text, true_label, pred_label, confidence}.
        Replaces what `phase` stored before (one set per phase)."""
        rows = [(run_id, phase, int(step), int(e["row"]), scrub(e.get("text")), str(e["true_label"]),
                 str(e["pred_label"]), e.get("confidence")) for e in errors]
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.execute("DELETE FROM eval_errors WHERE run_id=? AND phase=?", (run_id, phase))
                self.conn.executemany("INSERT INTO eval_errors (run_id, phase, step, row, text, true_label, "
                                      "pred_label, confidence) VALUES (?,?,?,?,?,?,?,?)", rows)
        except sqlite3.OperationalError as err:
            raise self._explain(err) from None

    def errors(self, run_id: int, *, true_label: Optional[str] = None, pred_label: Optional[str] = None,
               phase: str = "final") -> list[dict[str, Any]]:
        """Misclassified rows of `phase` (most confident mistakes first), optionally one cell of the
        confusion matrix (`true_label` and/or `pred_label`)."""
        sql, params = ("SELECT phase, step, row, text, true_label, pred_label, confidence FROM eval_errors "
                       "WHERE run_id=? AND phase=?"), [run_id, phase]
        if true_label is not None:
            sql += " AND true_label=?"
            params.append(true_label)
        if pred_label is not None:
            sql += " AND pred_label=?"
            params.append(pred_label)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY confidence DESC, row", params)]

    def log_probes(self, run_id: int, phase: str, step: int, answers: list[dict[str, Any]]) -> None:
        """One evaluation's probe answers: [{input, answer, detail?}] in the configured order."""
        t = now_ms()
        rows = [(run_id, phase, int(step), t, i, scrub(a["input"]), scrub(a.get("answer")),
                 json.dumps(a["detail"]) if a.get("detail") is not None else None) for i, a in enumerate(answers)]
        self.conn.executemany("INSERT INTO probes (run_id, phase, step, time, idx, input, answer, detail) "
                              "VALUES (?,?,?,?,?,?,?,?)", rows)

    def probes(self, run_id: int) -> list[dict[str, Any]]:
        """Every probe answer of a run, by evaluation then probe: {phase, step, idx, input, answer, detail}."""
        out = []
        for r in self.conn.execute("SELECT phase, step, idx, input, answer, detail FROM probes WHERE run_id=? "
                                   "ORDER BY rowid", (run_id,)):
            d = dict(r)
            d["detail"] = json.loads(d["detail"]) if d["detail"] else None
            out.append(d)
        return out
    # -- compressed variants -------------------------------------------------------------------
    def start_compression(self, run_id: int, variants: list[str], recover_steps: int = 0) -> int:
        """Pending rows for one compress call; returns its batch id."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            # the time in ms, made unique: two calls in the same millisecond are still two batches
            last = self.conn.execute("SELECT MAX(batch) FROM compressions").fetchone()[0] or 0
            batch = max(now_ms(), last + 1)
            self.conn.executemany(
                "INSERT INTO compressions (run_id, batch, variant, status, recover_steps, pid, time) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                [(run_id, batch, v, int(recover_steps), os.getpid(), batch) for v in variants])
        return batch

    def update_compression(self, batch: int, variant: str, **fields: Any) -> None:
        if "reason" in fields and isinstance(fields["reason"], str):
            fields["reason"] = scrub(fields["reason"])
        fields["time"] = now_ms()
        cols = ", ".join(f"{k}=?" for k in fields)
        self._write(f"UPDATE compressions SET {cols} WHERE batch=? AND variant=?", (*fields.values(), batch, variant))

    def compressions(self, run_id: int, *, latest: bool = True) -> list[dict[str, Any]]:
        """The run's compressed variants (with `latest`, the newest row per variant), oldest first.
        Rows left unfinished by a compress process that is gone read as 'interrupted'."""
        rows = [dict(r) for r in self.conn.execute("SELECT * FROM compressions WHERE run_id=? ORDER BY id", (run_id,))]
        for r in rows:
            if r["status"] in COMPRESSION_LIVE and not pid_alive(r["pid"]):
                r["status"] = "interrupted"
                r["reason"] = r["reason"] or "the compress process ended before this variant finished"
            r["metrics"] = json.loads(r["metrics"]) if r["metrics"] else {}
            r["info"] = json.loads(r["info"]) if r["info"] else {}
        if latest:
            by_variant: dict[str, dict[str, Any]] = {}
            for r in rows:
                by_variant.pop(r["variant"], None)
                by_variant[r["variant"]] = r
            rows = list(by_variant.values())
        return rows

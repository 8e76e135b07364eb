"""Deterministic history for UI tests and snapshots: runs with fixed times, metrics and logs."""

from __future__ import annotations

import math
import time
from pathlib import Path

from tuitune import paths
from tuitune.history import History

async def wait_for(pilot, cond, timeout: float = 20.0, what: str = "condition"):
    """Let a Pilot-driven app run until `cond()` holds; fail after `timeout` seconds naming `what`."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


T0 = 1_700_000_000_000  # fixed epoch ms: no clocks in snapshots


def _config(name: str, method: str, lr: float) -> dict:
    return {
        "name": name, "task": "classification",
        "model": {"name_or_path": "demo:minilm"},
        "data": {"path": "demo:bbc-news", "text_column": "text", "label_column": "label", "max_length": 128},
        "method": {"name": method, "lora_r": 8},
        "training": {"max_steps": 60, "learning_rate": lr, "per_device_train_batch_size": 16},
    }


def seed_history(db: Path | None = None) -> dict[str, int]:
    """Two finished runs (completed full, stopped LoRA), every table filled, fixed timestamps."""
    h = History(db)
    ids = {}
    for n, (name, method, status, lr) in enumerate(
            [("bbc-full", "full", "completed", 1e-4), ("bbc-lora", "lora", "stopped", 3e-4)]):
        rid = h.create_run(_config(name, method, lr), run_dir_for=paths.run_dir)
        start = T0 + n * 3_600_000
        h.conn.execute("UPDATE runs SET status=?, created_at=?, started_at=?, ended_at=?, heartbeat_at=?, "
                       "max_steps=60, step=?, main_metric='accuracy', main_value=?, baseline_value=0.21, "
                       "trainable_params=?, total_params=22713216 WHERE id=?",
                       (status, start, start, start + 95_000 + n * 20_000, start + 95_000,
                        60 if status == "completed" else 40, 0.95 - 0.1 * n, 22713216 if n == 0 else 300_000, rid))
        h.conn.execute("INSERT INTO evaluations (run_id, phase, step, time, metrics) VALUES (?,?,?,?,?)",
                       (rid, "baseline", 0, start, '{"eval_loss": 1.62, "eval_accuracy": 0.21}'))
        last = 60 if status == "completed" else 40
        for step in range(1, last + 1):
            loss = 1.6 * math.exp(-step / (20 + 10 * n)) + 0.05 * math.sin(step) ** 2
            h.conn.execute(
                "INSERT INTO metrics (run_id, key, step, time, value) VALUES (?,?,?,?,?),(?,?,?,?,?),(?,?,?,?,?),(?,?,?,?,?)",
                (rid, "train/loss", step, start + step * 1000, loss,
                 rid, "train/learning_rate", step, start + step * 1000, lr * (1 - step / 60),
                 rid, "train/grad_norm", step, start + step * 1000, 2.0 / (1 + step / 10),
                 rid, "train/samples_per_second", step, start + step * 1000, 40.0 + n))
            if step % 20 == 0:
                acc = 0.5 + step / 150 - 0.1 * n
                h.conn.execute("INSERT INTO metrics (run_id, key, step, time, value) VALUES (?,?,?,?,?)",
                               (rid, "eval/loss", step, start + step * 1000, loss * 1.1))
                h.conn.execute("INSERT INTO evaluations (run_id, phase, step, time, metrics) VALUES (?,?,?,?,?)",
                               (rid, "eval", step, start + step * 1000,
                                f'{{"eval_loss": {loss * 1.1:.4f}, "eval_accuracy": {acc:.4f}}}'))
            if step % 10 == 0:
                h.conn.execute("INSERT INTO system (run_id, time, step, cpu_percent, ram_used, ram_total, gpus) "
                               "VALUES (?,?,?,?,?,?,?)", (rid, start + step * 1000, step, 150.0 + step,
                                                          3 << 30, 16 << 30, "[]"))
        if status == "completed":
            h.conn.execute("INSERT INTO evaluations (run_id, phase, step, time, metrics) VALUES (?,?,?,?,?)",
                           (rid, "final", 60, start + 95_000, '{"eval_loss": 0.2, "eval_accuracy": 0.95}'))
        d = paths.run_dir(rid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "engine.log").write_text(f"run {rid}: loading model\nrun {rid}: training 60 steps\n"
                                      f"run {rid}: {status}\n")
        ids[name] = rid
    h.close()
    return ids

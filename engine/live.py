"""What runs beside training and imports no ML library, so a run starts (and a bad input fails)
before transformers loads: the stop flag signal handlers set, and the system sampler thread."""

from __future__ import annotations

import threading
from typing import Optional

from tuitune import sysmon
from tuitune.history import History


class StopFlag:
    """Set by a signal handler or a stop request in the history; read at every step."""

    def __init__(self):
        self.event = threading.Event()
        self.reason: Optional[str] = None

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


class SystemSampler(threading.Thread):
    """CPU, RAM and GPU readings ~1/s, plus the run's heartbeat. Its own connection."""

    def __init__(self, db_path, run_id: int, interval_s: float = 1.0, step_fn=None):
        super().__init__(daemon=True, name="tuitune-sysmon")
        self.db_path = db_path
        self.run_id = run_id
        self.interval_s = interval_s
        self.step_fn = step_fn or (lambda: None)
        self._halt = threading.Event()

    def run(self):
        h = History(self.db_path)
        try:
            import psutil

            psutil.cpu_percent(interval=None)  # the first reading is always 0.0
        except Exception:
            pass
        while not self._halt.wait(self.interval_s):
            try:
                step = self.step_fn()
                h.log_system(self.run_id, sysmon.sample(), step=step)
                h.heartbeat(self.run_id, step or None)  # the step shows live between log lines
            except Exception:
                pass  # a busy database or a full disk must not kill training; the next tick retries
        h.close()

    def halt(self):
        self._halt.set()

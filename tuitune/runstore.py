"""The history as the UI reads and changes it, safe to call from Textual's worker threads.

Screens never talk to SQLite or the engine directly: they call a `RunStore` from workers, and it
answers with the history's typed records (`RunRecord`, `EvalRecord`) and plain metric rows.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tuitune.records import EvalRecord, RunRecord

if TYPE_CHECKING:
    from tuitune.history import History


class RunStore:
    """The history as the UI reads and changes it. Safe to call from worker threads:
    each thread gets its own `History` connection."""

    def __init__(self, db_path: Optional[Path] = None):
        self.db_path = db_path
        self._local = threading.local()

    @property
    def h(self) -> "History":
        h = getattr(self._local, "h", None)
        if h is None:
            from tuitune.history import History

            h = self._local.h = History(self.db_path)
        return h

    def runs(self) -> list[RunRecord]:
        return self.h.list_runs()

    def run(self, run_id: int) -> RunRecord:
        return self.h.get_run(run_id)

    def metrics(self, run_id: int, after_rowid: int = 0) -> list[dict[str, Any]]:
        return self.h.metrics(run_id, after_rowid=after_rowid)

    def evaluations(self, run_id: int) -> list[EvalRecord]:
        return self.h.evaluations(run_id)

    def evaluation_depth(self, run_id: int) -> dict[str, Any]:
        """Per-class reports and confusion matrices of every evaluation, the final evaluation's
        misclassified rows, and every probe answer (the Evaluation screen's one read)."""
        h = self.h
        return {"reports": h.class_report(run_id), "confusions": h.confusions(run_id),
                "errors": h.errors(run_id), "probes": h.probes(run_id)}

    def system(self, run_id: int, after_time: int = 0) -> list[dict[str, Any]]:
        return self.h.system(run_id, after_time=after_time)

    def events(self, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
        return self.h.events(run_id, after_id=after_id)

    def log_tail(self, run: RunRecord, lines: int = 200) -> list[str]:
        if run.log_path is None:
            return []
        try:
            with open(run.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 32_000))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        # Trainer redraws progress lines with \r: keep the last state of each line.
        out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
        return [ln for ln in out if ln.strip()][-lines:]

    def stop(self, run_id: int) -> None:
        from tuitune import launcher

        launcher.stop_run(self.h, run_id)

    def delete(self, run_id: int) -> None:
        from tuitune import launcher

        launcher.delete_run(self.h, run_id)

    def launch(self, config: dict[str, Any]) -> int:
        from tuitune import launcher
        from tuitune.config import validate_config

        cfg = validate_config(config)
        return launcher.start_run(self.h, cfg)

    def compressions(self, run_id: int) -> list[dict[str, Any]]:
        """The run's compressed variants, newest row per variant."""
        return self.h.compressions(run_id)

    def compress(self, run_id: int, variants: list[str], recover_steps: int, on_progress=None) -> dict[str, Any]:
        """Build and measure variants in a `python -m tuitune.engine compress` process (blocks: call
        from a worker); `on_progress(str)` gets each progress line."""
        from tuitune import compress_cli

        return compress_cli.run_compress(run_id, variants, recover_steps, on_progress)

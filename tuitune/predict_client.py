"""Drive a long-lived `python -m tuitune.engine serve RUN` process: the UI's way to query a model.

The engine keeps the base and fine-tuned models loaded; each request is one JSON line on its stdin
and one answer line on its stdout (a streamed generation sends a line per new piece of text first). The UI process never imports torch. Calls block: run them in a
worker thread. One request at a time (a lock), so answers never cross.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from tuitune.errors import TuituneError


class PredictClient:
    def __init__(self, run_id: int, *, start_timeout_s: float = 120.0):
        self.run_id = run_id
        self.start_timeout_s = start_timeout_s
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._next_id = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuitune.engine", "serve", str(self.run_id)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, env=env,
        )
        first = self._readline(proc)
        if not first.get("ready"):
            proc.kill()
            raise TuituneError(first.get("error") or f"the predict engine for run {self.run_id} did not start")
        return proc

    def _readline(self, proc: subprocess.Popen) -> dict[str, Any]:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                code = proc.poll()
                raise TuituneError(f"the predict engine for run {self.run_id} exited (code {code})")
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue  # a stray print from a library: skip it

    def ask(self, text: str, *, top_k: Optional[int] = None, base: bool = False,
            on_token: Optional[Callable[[str], None]] = None, **options: Any) -> dict[str, Any]:
        """One answer: {"predictions": [...], "task": ...} for labels and fill-mask, {"generated": ...}
        for causal LMs; raises TuituneError with the engine's message.

        `options` are the generation settings (`tuitune.generation.GENERATION_KEYS`) and `history`
        (earlier chat turns). With `on_token`, a causal LM's answer streams: `on_token(piece)` is
        called, in this thread, with each new piece of text as the engine generates it."""
        req: dict[str, Any] = {"text": text, "base": base, **options}
        if top_k is not None:
            req["top_k"] = top_k
        if on_token is not None:
            req["stream"] = True
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            self._next_id += 1
            req["id"] = self._next_id
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps(req) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._proc = None
                raise TuituneError(f"the predict engine for run {self.run_id} stopped: try again") from None
            while True:
                answer = self._readline(self._proc)
                if answer.get("id") not in (None, req["id"]):
                    continue  # a late line of an earlier request
                if "token" in answer and "done" not in answer and "error" not in answer:
                    if on_token is not None:
                        on_token(answer["token"])
                    continue
                break
        if "error" in answer:
            raise TuituneError(answer["error"])
        return answer

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=3)
        except Exception:
            proc.kill()
            try:
                proc.wait(timeout=3)
            except Exception:
                pass

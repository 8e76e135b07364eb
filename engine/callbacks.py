"""The bridge from Hugging Face's Trainer to the run history.

`HistoryCallback` writes every logged value (floats from `state.log_history`, never parsed from
stdout), evaluations, checkpoints and the step; it turns a stop request (SIGTERM, Ctrl-C in the
CLI, the UI's stop key, `tuitune stop`) into a graceful stop with a checkpoint.
`SystemSampler` (in `live`, which imports no ML library) writes CPU/RAM/GPU readings ~1/s and a
heartbeat from a background thread. Only the main process (rank 0) writes.
"""

from __future__ import annotations

import time
from typing import Optional

from transformers import TrainerCallback

from tuitune.engine.live import StopFlag, SystemSampler  # noqa: F401 - importable from here as before
from tuitune.history import History


def metric_key(k: str) -> str:
    if k.startswith("eval_"):
        return "eval/" + k[5:]
    if k.startswith("test_"):
        return "test/" + k[5:]
    return "train/" + k


class HistoryCallback(TrainerCallback):
    def __init__(self, history: Optional[History], run_id: int, stop: StopFlag, task, counter=None,
                 poll_s: float = 1.0):
        self.h = history
        self.run_id = run_id
        self.stop = stop
        self.task = task
        self.counter = counter
        self.poll_s = poll_s
        self._last_poll = 0.0
        self._last_log_t: Optional[float] = None
        self._last_tokens = 0
        self._last_samples = 0
        self.stopped_at: Optional[int] = None
        self.phase = "eval"  # the runner sets "baseline" / "final" / "test" around its own evaluations
        self.last_eval: Optional[tuple[int, dict]] = None  # (step, metrics) of the latest periodic evaluation
        # after_eval(phase, step, model): the runner's hook storing what an evaluation saw beyond its
        # metrics (class report, probes); clock: counts the time and tokens periodic evaluations take
        self.after_eval = None
        self.clock = None
        self._step_end: tuple[float, int] = (0.0, 0)

    def _main(self, state) -> bool:
        return self.h is not None and state.is_world_process_zero

    def on_train_begin(self, args, state, control, **kw):
        if self._main(state):
            self.h.update_run(self.run_id, max_steps=state.max_steps)
        self._last_log_t = time.perf_counter()
        if self.counter is not None:
            self._last_tokens, self._last_samples = self.counter.tokens, self.counter.samples

    def on_step_end(self, args, state, control, **kw):
        # a periodic evaluation runs between here and on_evaluate: what it collates is not training
        self._step_end = (time.perf_counter(), self.counter.tokens if self.counter is not None else 0)
        now = time.monotonic()
        if self.h is not None and now - self._last_poll >= self.poll_s:
            self._last_poll = now
            if self.h.stop_requested(self.run_id):
                self.stop.set("stop requested")
        if self.stop:
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at = state.global_step
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if not self._main(state) or not logs:
            return
        values = {metric_key(k): v for k, v in logs.items() if isinstance(v, (int, float))}
        if any(k.startswith("train/") for k in values) and "train/loss" in values:
            t = time.perf_counter()
            if self.counter is not None and self._last_log_t is not None and t > self._last_log_t:
                dt = t - self._last_log_t
                # counts are per process; with DDP the whole run does world_size times as much
                world = max(1, args.world_size)
                values["train/tokens_per_second"] = (self.counter.tokens - self._last_tokens) * world / dt
                values["train/samples_per_second"] = (self.counter.samples - self._last_samples) * world / dt
                self._last_tokens, self._last_samples = self.counter.tokens, self.counter.samples
            self._last_log_t = t
        if any(k.startswith("eval/") for k in values):
            values = {k: v for k, v in values.items() if not k.startswith("train/")}
        self.h.log_metrics(self.run_id, state.global_step, values)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        # The runner records its own (baseline/final/test) evaluations; this records periodic ones.
        if not metrics or self.phase != "eval":
            return
        m = self.task.postprocess_eval(dict(metrics))
        self.last_eval = (state.global_step, m)  # every process: all must agree to reuse it as the final one
        if self.clock is not None and self._step_end[0]:
            self.clock.eval_s += time.perf_counter() - self._step_end[0]
            if self.counter is not None:
                self.clock.eval_tokens += self.counter.tokens - self._step_end[1]
        if self._main(state):
            self.h.log_evaluation(self.run_id, "eval", state.global_step, m)
            extra = {metric_key(k): v for k, v in m.items() if k not in metrics}
            if extra:
                self.h.log_metrics(self.run_id, state.global_step, extra)
            if self.after_eval is not None:
                self.after_eval("eval", state.global_step, kw.get("model"))
        if self.clock is not None:  # probes are not training time either
            self._step_end = (0.0, 0)

    def on_save(self, args, state, control, **kw):
        if self._main(state):
            self.h.log_event(self.run_id, "checkpoint", f"checkpoint-{state.global_step}", step=state.global_step)

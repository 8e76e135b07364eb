"""One run, start to finish: config → data → model → method → Trainer → history → saved model.

Reads its config from the history row (written by the launcher), writes everything it does back
to the history, and ends the run as completed, stopped (graceful, with a checkpoint) or failed
(with a one-line message that says what to change). The full traceback of an unexpected error
goes to `runs/<id>/engine.log`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

from tuitune.config import RunConfig, stored_config
from tuitune.errors import TuituneError
from tuitune.history import History
from tuitune.launcher import checkpoints
from tuitune.safety import ScrubbingStream, private_text, scrub


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


class Run:
    """Everything one run builds; `execute()` does the work."""

    def __init__(self, run_id: int, *, resume: bool = False, history: Optional[History] = None):
        self.run_id = run_id
        self.resume = resume
        self.main = rank() == 0
        # Multi-node: the first process of every other node keeps its own node's history row
        # (status, heartbeat, system samples); metrics and evaluations come from global rank 0.
        self.node_main = not self.main and local_rank() == 0
        self.h = history or History()
        row = self.h.get_run(run_id) if self.main else self._row_no_refresh(run_id)
        self.row = row
        self.cfg = stored_config(row["config"])
        self.run_dir = Path(row["run_dir"]) if row.get("run_dir") else Path.cwd()
        from tuitune.engine.live import StopFlag

        self.stop = StopFlag()
        from tuitune.engine.evaluation import Clock

        self.clock = Clock()  # execute() restarts it

    def _row_no_refresh(self, run_id: int) -> dict:
        r = self.h.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        d = dict(r)
        d["config"] = json.loads(d["config"])
        return d

    # -- building ---------------------------------------------------------------------------------
    def build(self):
        # The model path and the data are checked before the Trainer's imports (peft, accelerate):
        # a mistyped path fails in a second or two, not after the whole ML stack has loaded.
        from tuitune.engine import methods, models
        from tuitune.engine.tasks import TokenCounter, get_task

        cfg = self.cfg
        if cfg.model.trust_remote_code and self.main:
            msg = (f"model.trust_remote_code is on: code shipped with {cfg.model.name_or_path} runs in this "
                   "process with your permissions; turn it off unless you trust that repository")
            print(f"tuitune: warning: {msg}", file=sys.stderr, flush=True)
            self.h.log_event(self.run_id, "warning", msg)
        from tuitune.engine import tracking

        tracking.prepare(cfg, self.run_dir, self.run_id)
        self.task = task = get_task(cfg)
        self.model_path = models.resolve(cfg.model.name_or_path)
        self.tokenizer = models.load_tokenizer(cfg, self.model_path)
        self._mark("tokenizer", "tokenizer loaded")
        self.dataset = task.prepare(self.tokenizer)
        self._mark("data", ", ".join(f"{k} {len(v):,}" for k, v in self.dataset.items()))
        from tuitune.engine import faults
        from tuitune.engine.callbacks import HistoryCallback
        from tuitune.engine.trainer_args import trainer_callbacks

        model = task.load_model(self.model_path)  # seeds first: a new head's weights are part of the run
        model = methods.apply_method(model, cfg, task)
        self.model = model
        trainable, total = methods.count_parameters(model)
        if trainable == 0:
            raise TuituneError(f"method {cfg.method.name} left no trainable parameters in this model")
        if self.main:
            self.h.update_run(self.run_id, trainable_params=trainable, total_params=total,
                              main_metric=cfg.main_metric)
            self.h.log_event(self.run_id, "model",
                             f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)")
        self.counter = TokenCounter(task.collator(self.tokenizer))
        self.callback = HistoryCallback(self.h if self.main else None, self.run_id, self.stop, task, self.counter)
        self.callback.after_eval = self._after_eval
        self.callback.clock = self.clock
        self.trainer = task.build_trainer(
            model=model, datasets=self.dataset, collator=self.counter, tokenizer=self.tokenizer,
            callbacks=trainer_callbacks(cfg, self.callback), output_dir=self.run_dir / "checkpoints")
        spec = faults.configured()
        if spec:
            self.trainer.add_callback(faults.FaultInjector(spec))
        from tuitune.engine import watchdog

        self.watchdog = watchdog.install(self.trainer, cfg)
        tracking.name_run(self.trainer, cfg, self.run_id)
        return self.trainer

    def _mark(self, kind: str, message: str) -> None:
        """A timestamped event for a phase of the start (bench/first_step.py reads them)."""
        if self.main:
            self.h.log_event(self.run_id, kind, message)

    # -- running ----------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        def handler(signum, frame):
            self.stop.set(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _evaluate(self, phase: str, dataset=None, prefix: str = "eval") -> dict[str, float]:
        self.callback.phase = phase
        self.task.eval_split = "test" if prefix == "test" else "validation"
        try:
            metrics = self.trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
        finally:
            self.callback.phase = "eval"
            self.task.eval_split = "validation"
        metrics = self.task.postprocess_eval(dict(metrics))
        if self.main:
            self.h.log_evaluation(self.run_id, phase, self.trainer.state.global_step, metrics)
            self._after_eval(phase, self.trainer.state.global_step)
        return metrics

    def _after_eval(self, phase: str, step: int, model=None) -> None:
        """What an evaluation saw beyond its metrics (the task's class report), and the probes
        answered by the model as it is now. Main process only; never stops training."""
        if not self.main:
            return
        try:
            self.task.record_evaluation(self.h, self.run_id, phase, step)
            if phase != "test":  # the probes answer once per set of weights; test follows final's weights
                self._answer_probes(phase, step, model)
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            print(f"tuitune: warning: evaluation details at step {step} not stored: {type(err).__name__}: {err}",
                  file=sys.stderr, flush=True)

    def _answer_probes(self, phase: str, step: int, model=None) -> None:
        from tuitune.engine.evaluation import answer_probes

        inputs = self.cfg.probe_inputs
        if not inputs:
            return
        if self.cfg.training.fsdp:  # the main process alone holds a shard, not the model
            if phase == "baseline":
                self.h.log_event(self.run_id, "warning", "probes are not answered under FSDP")
            return
        model = model if model is not None else self.trainer.model
        model = getattr(model, "module", model)  # DDP's wrapper: the forward pass alone, no collective
        meta = dict(self.task.meta(), method=self.cfg.method.name, peft=hasattr(model, "peft_config"))
        answers = answer_probes(model, self.tokenizer, meta, inputs,
                                max_new_tokens=self.cfg.evaluation.probe_max_new_tokens)
        self.h.log_probes(self.run_id, phase, step, answers)

    def _final_evaluation(self) -> dict[str, float]:
        """Training that ended on an evaluation step (every epoch-end evaluation does) has already
        evaluated these weights, unless the best checkpoint replaced them: record that result as the
        final one instead of evaluating again (~5 % of a BBC run)."""
        state, last = self.trainer.state, self.callback.last_eval
        best = state.best_model_checkpoint
        restored = bool(self.trainer.args.load_best_model_at_end and best
                        and Path(best).name != f"checkpoint-{state.global_step}")
        if last is None or last[0] != state.global_step or restored:
            return self._evaluate("final")
        step, metrics = last
        if self.main:
            self.h.log_evaluation(self.run_id, "final", step, metrics)
            self.h.log_event(self.run_id, "final_reused", f"final evaluation = step {step}'s (same weights)", step=step)
            self._after_eval("final", step)  # the class report of that evaluation, kept by the task
        return metrics

    def _launched_by_torchrun(self) -> bool:
        """The launcher's pid is torchrun's, which forwards SIGTERM to every process: keep it."""
        return "TORCHELASTIC_RUN_ID" in os.environ or self.cfg.training.processes > 1

    def _last_checkpoint(self) -> Optional[str]:
        found = checkpoints(self.run_id, self.run_dir)  # complete ones only (a kill mid-save leaves a partial one)
        return str(found[-1]) if found else None

    def execute(self) -> int:
        """Returns the process exit code (0 completed or stopped, 1 failed)."""
        from tuitune.engine.live import SystemSampler
        from tuitune.engine.evaluation import Clock

        self.clock = Clock()
        self._install_signals()
        h = self.h
        sampler = None
        if self.main or self.node_main:
            h.update_run(self.run_id, pid=self.row.get("pid") if self._launched_by_torchrun() else os.getpid())
            h.set_status(self.run_id, "running")
            sampler = SystemSampler(h.path, self.run_id, step_fn=lambda: getattr(
                getattr(getattr(self, "trainer", None), "state", None), "global_step", None))
            sampler.start()
            watch_sweep(self.stop)
        code = 1
        try:
            code = self._execute()
            return code
        except TuituneError as err:
            return self._fail(str(err))
        except Exception as err:  # noqa: BLE001 - the last line of defence: one line to the user
            traceback.print_exc()
            return self._fail(describe_exception(err, self.cfg))
        finally:
            if sampler is not None:
                sampler.halt()
            if self.node_main and code == 0:
                h.set_status(self.run_id, "stopped" if self.stop else "completed")

    def _record_resources(self) -> None:
        """What the run cost, on the run row: wall and train time, peak memory, tokens/s."""
        from tuitune.engine.evaluation import peak_gpu_bytes, peak_ram_bytes

        c = self.clock
        fields: dict[str, Any] = {"wall_time_s": round(c.wall_s(), 3), "peak_ram_bytes": peak_ram_bytes(),
                                  "peak_gpu_bytes": peak_gpu_bytes()}
        if c.train_s:
            fields["train_time_s"] = round(c.train_s, 3)
            steps_s = c.train_s - c.eval_s
            if c.train_tokens and steps_s > 0:
                world = max(1, int(os.environ.get("WORLD_SIZE", "1")))  # the counter counts this process's
                fields["tokens_per_s"] = round(c.train_tokens * world / steps_s, 1)
        try:
            self.h.update_run(self.run_id, **fields)
        except TuituneError as err:
            print(f"tuitune: resources not recorded: {err}", file=sys.stderr, flush=True)

    def _fail(self, message: str) -> int:
        print(f"tuitune: run {self.run_id} failed: {message}", file=sys.stderr, flush=True)
        if self.main or self.node_main:
            if self.main:
                self._record_resources()
            self.h.set_status(self.run_id, "failed", error=message)
        return 1

    def _execute(self) -> int:
        cfg, h = self.cfg, self.h
        attempts = 0
        while True:
            try:
                self.build()
                resume_from = self._last_checkpoint() if self.resume else None
                if self.resume and resume_from is None and self.main:
                    # killed before its first checkpoint: train again from step 0 in this run (its
                    # events stay; its steps and evaluations, the baseline too, are written anew)
                    h.truncate_after(self.run_id, -1)
                    h.update_run(self.run_id, step=0)
                if resume_from and self.main:
                    step = int(resume_from.rsplit("-", 1)[-1])
                    h.truncate_after(self.run_id, step)
                if cfg.evaluation.baseline and not resume_from and attempts == 0:
                    base = self._evaluate("baseline")
                    key = f"eval_{self.task.main_metric}"
                    if self.main and key in base:
                        h.update_run(self.run_id, baseline_value=base[key])
                self._train(resume_from)
                break
            except Exception as err:
                if not out_of_memory(err):
                    raise
                traceback.print_exc()
                t = cfg.training
                if not t.auto_retry_oom or t.per_device_train_batch_size <= 1 or attempts >= 4:
                    raise TuituneError(oom_message(cfg)) from err
                attempts += 1
                new_bs = t.per_device_train_batch_size // 2
                new_acc = t.gradient_accumulation_steps * 2
                msg = (f"out of memory at batch {t.per_device_train_batch_size}: retrying with "
                       f"per_device_train_batch_size={new_bs}, gradient_accumulation_steps={new_acc}")
                print(msg, file=sys.stderr, flush=True)
                t.per_device_train_batch_size, t.gradient_accumulation_steps = new_bs, new_acc
                if self.main:
                    h.log_event(self.run_id, "oom_retry", msg)
                    h.update_run(self.run_id, config=json.dumps(cfg.model_dump(mode="json")))
                    # the retry trains from step 0 with a new batch: drop the old attempt's steps
                    # and checkpoints so the timeline has no duplicates and resume cannot mix them
                    h.truncate_after(self.run_id, 0)
                    shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
                    private_text(self.run_dir / "config.yaml", scrub(cfg.to_yaml()))
                self.resume = False
                self._free()

        dog = getattr(self, "watchdog", None)
        if dog is not None and dog.reason:
            if self.main:
                h.log_event(self.run_id, "diverged", dog.reason, step=dog.step)
            raise TuituneError(diverged_message(dog.reason, self._last_checkpoint(), self.run_id))
        if self.stop:
            if self.main:
                self._record_resources()  # before the status: whoever waits for the end reads them
            if self.main and self.stop.reason == SWEEP_GONE:
                h.set_status(self.run_id, "crashed",
                             error=f"crashed: the sweep process running this trial is gone (stopped at step "
                                   f"{self.trainer.state.global_step}); `tuitune sweep --resume` continues the sweep")
            elif self.main:
                h.set_status(self.run_id, "stopped",
                             error=f"stopped at step {self.trainer.state.global_step} ({self.stop.reason}); "
                                   f"`tuitune resume {self.run_id}` continues")
            return 0
        final = self._final_evaluation()
        test = self.dataset.get("test") if hasattr(self.dataset, "get") else None
        if test is not None and cfg.evaluation.on_test:
            self._evaluate("test", test, prefix="test")
        self.save()
        if self.main:
            key = f"eval_{self.task.main_metric}"
            h.update_run(self.run_id, main_value=final.get(key))
            self._record_resources()  # before the status: whoever waits for the end reads them
            h.set_status(self.run_id, "completed")
        return 0

    def _train(self, resume_from: Optional[str]) -> None:
        """trainer.train(), timed; the tokens it collated, less its evaluations', are training tokens."""
        import time

        c = self.clock
        t0, tokens0, eval_tokens0 = time.perf_counter(), self.counter.tokens, c.eval_tokens
        try:
            self.trainer.train(resume_from_checkpoint=resume_from)
        finally:
            c.train_s += time.perf_counter() - t0
            c.train_tokens += (self.counter.tokens - tokens0) - (c.eval_tokens - eval_tokens0)

    def _free(self) -> None:
        import gc

        import torch

        for attr in ("trainer", "model"):
            if hasattr(self, attr):
                delattr(self, attr)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def save(self) -> None:
        """Model (or adapter), tokenizer, config and training arguments together in runs/<id>/model."""
        if not self.main:
            self.trainer.save_model(str(self.run_dir / "model"))
            return
        out = self.run_dir / "model"
        self.trainer.save_model(str(out))
        self.tokenizer.save_pretrained(str(out))
        (out / "tuitune.yaml").write_text(scrub(self.cfg.to_yaml()), encoding="utf-8")
        (out / "training_args.json").write_text(self.trainer.args.to_json_string(), encoding="utf-8")
        meta = self.task.meta()
        meta.update(base_model=self.model_path, method=self.cfg.method.name,
                    peft=hasattr(self.trainer.model, "peft_config"))
        (out / "tuitune.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        self.h.log_event(self.run_id, "saved", str(out))


SWEEP_GONE = "sweep process gone"


def out_of_memory(err: BaseException) -> bool:
    """torch's out-of-memory error (torch is loaded by then if it was raised) or Python's MemoryError."""
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.OutOfMemoryError)


def watch_sweep(stop) -> None:
    """A sweep's trial ends (crashed, with a checkpoint) when the sweep process that started it is
    killed, so `tuitune sweep --resume` finds no orphan trial still training."""
    import threading

    from tuitune.history import pid_alive

    pid = os.environ.get("TUITUNE_SWEEP_PID")
    if not pid or not pid.isdigit():
        return

    def watch():
        while not stop.event.wait(1.0):
            if not pid_alive(int(pid)):
                stop.set(SWEEP_GONE)
                return

    threading.Thread(target=watch, daemon=True, name="tuitune-sweep-watch").start()


def oom_message(cfg: RunConfig) -> str:
    t = cfg.training
    return (f"out of memory: lower training.per_device_train_batch_size (now {t.per_device_train_batch_size}) "
            f"or data.max_length (now {cfg.data.max_length}), use LoRA/QLoRA, or set training.auto_retry_oom=true")


def diverged_message(reason: str, checkpoint: Optional[str], run_id: int) -> str:
    if checkpoint:
        kept = (f"{Path(checkpoint).name}, from before it, is kept (`tuitune resume {run_id}` continues from it "
                "with the same settings)")
    else:
        kept = "no checkpoint was saved before it"
    return (f"stopped by the watchdog: {reason}; {kept}; lower training.learning_rate "
            "(or loosen the watchdog section) and run again")


def describe_exception(err: Exception, cfg: RunConfig) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    low = str(err).lower()
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) \
            or any(s in low for s in ("no space left", "file too large", "disk quota")):
        return ("disk full while writing (checkpoint or model): free space (or raise the file-size limit) "
                "or lower training.save_total_limit; `tuitune resume` continues from the last complete checkpoint")
    if "out of memory" in low:
        return oom_message(cfg)
    if isinstance(err, IndexError) and "target" in low:
        return "labels out of range for the model's classifier: check data.label_column holds 0..N-1 or names"
    return f"{type(err).__name__}: {first[:300]} (details in engine.log)"


def main(run_id: int, resume: bool = False) -> int:
    os.umask(0o077)  # checkpoints, models and logs: readable by their owner only
    sys.stdout = ScrubbingStream(sys.stdout)
    sys.stderr = ScrubbingStream(sys.stderr)
    try:
        run = Run(run_id, resume=resume)
    except TuituneError as err:
        print(f"tuitune: {err}", file=sys.stderr)
        return 1
    return run.execute()

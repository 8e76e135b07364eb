"""What makes a long run safe to leave alone: a divergence watchdog and checkpoints by wall time.

`LossWatch` decides, from the logged training losses alone, whether a run diverged: a NaN/Inf loss
at once; otherwise a loss that stays far above its best for several logs in a row (`watchdog`
section of the config). It is plain Python, fed floats.

`DivergenceWatchdog` (a TrainerCallback) applies it: when the run diverges it stops training
without a checkpoint, so the newest checkpoint on disk is one from before the divergence. While
the loss is above the threshold (an excursion that may yet become a divergence), or the trainable
weights are not finite, it vetoes checkpoints, so diverged weights never become the resume point.

`TimeCheckpoints` (a TrainerCallback) asks for a checkpoint when `training.checkpoint_every_minutes`
passed since the last one (or the start), however far apart the step checkpoints are.

Under several processes every rank must agree on a save (it is a collective): the loss Trainer logs
is already averaged across processes, and the time decision is broadcast from rank 0.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Optional

from transformers import TrainerCallback

from tuitune.config import RunConfig


class LossWatch:
    """Feed it each logged training loss (`see`); `reason` is set once the run diverged."""

    def __init__(self, factor: float = 3.0, margin: float = 1.0, patience: int = 3):
        self.factor, self.margin, self.patience = factor, margin, patience
        self.window: deque[float] = deque(maxlen=patience)
        self.best_avg: Optional[float] = None  # the best mean of `patience` consecutive logged losses
        self.reason: Optional[str] = None
        self.above = False  # the latest loss is above the threshold (an excursion under way)
        self.first_bad_step: Optional[int] = None

    def threshold(self) -> Optional[float]:
        if self.best_avg is None:
            return None
        return max(self.factor * self.best_avg, self.best_avg + self.margin)

    def see(self, loss: float, step: int) -> Optional[str]:
        if self.reason:
            return self.reason
        if not math.isfinite(loss):
            self.first_bad_step = self.first_bad_step if self.above else step
            self.reason = f"training loss became {loss} at step {step}"
            return self.reason
        limit = self.threshold()
        self.above = limit is not None and loss > limit
        if self.above:
            if self.first_bad_step is None:
                self.first_bad_step = step
        else:
            self.first_bad_step = None
        self.window.append(loss)
        if limit is not None and len(self.window) == self.patience and min(self.window) > limit:
            self.reason = (f"training loss diverged: {loss:.4g} at step {step}, above {limit:.4g} "
                           f"({self.factor:g}x its best average {self.best_avg:.4g}) for {self.patience} logs")
            return self.reason
        if len(self.window) == self.patience:
            avg = sum(self.window) / self.patience
            if self.best_avg is None or avg < self.best_avg:
                self.best_avg = avg
        return None


def _weights_finite(model) -> bool:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point() and p.numel() and not bool(torch.isfinite(p).all()):
                return False
    return True


class DivergenceWatchdog(TrainerCallback):
    def __init__(self, cfg: RunConfig):
        w = cfg.watchdog
        self.watch = LossWatch(w.loss_factor, w.loss_margin, w.patience)
        self.check_grad_norm = not _fp16(cfg)  # fp16's loss scaler skips inf-gradient steps by design
        self.check_weights = not cfg.training.fsdp  # FSDP ranks hold different shards: no local verdict
        self.step: Optional[int] = None

    @property
    def reason(self) -> Optional[str]:
        return self.watch.reason

    def _halt(self, control):
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False
        return control

    def on_step_end(self, args, state, control, model=None, **kw):
        return self._before_save(state, control, model)

    def on_epoch_end(self, args, state, control, model=None, **kw):
        return self._before_save(state, control, model)

    def _before_save(self, state, control, model):
        if self.watch.reason:
            return self._halt(control)
        if control.should_save and model is not None and self.check_weights and not _weights_finite(model):
            self.watch.reason = f"trainable weights became NaN/Inf by step {state.global_step}"
            self.step = state.global_step
            return self._halt(control)
        if self.watch.above:
            control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs or any(k.startswith(("eval_", "test_")) for k in logs):
            return control
        loss = float(logs["loss"])
        grad = logs.get("grad_norm")
        if self.check_grad_norm and isinstance(grad, (int, float)) and not math.isfinite(grad) \
                and math.isfinite(loss) and not self.watch.reason:
            self.watch.reason = f"gradient norm became {grad} at step {state.global_step}"
        self.watch.see(loss, state.global_step)
        if self.watch.reason:
            self.step = self.step or state.global_step
            return self._halt(control)
        if self.watch.above:  # maybe a spike, maybe a divergence: no checkpoint until it is clear
            control.should_save = False
        return control


def _fp16(cfg: RunConfig) -> bool:
    from tuitune.engine.trainer_args import mixed_precision

    try:
        return mixed_precision(cfg)["fp16"]
    except Exception:  # noqa: BLE001 - the runner reports a bad mixed_precision itself
        return False


class TimeCheckpoints(TrainerCallback):
    def __init__(self, minutes: float, clock=time.monotonic):
        self.every_s = minutes * 60.0
        self.clock = clock
        self.last = clock()

    def on_train_begin(self, args, state, control, **kw):
        self.last = self.clock()

    def on_step_end(self, args, state, control, **kw):
        due = self.clock() - self.last >= self.every_s
        if args.world_size > 1:
            due = _agree(due)
        if due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kw):
        self.last = self.clock()


def _agree(flag: bool) -> bool:
    """Rank 0's decision, on every rank (a checkpoint is a collective)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def install(trainer, cfg: RunConfig) -> Optional[DivergenceWatchdog]:
    """Add the time checkpoints and the watchdog (last: it may veto any save) to a built Trainer."""
    minutes = cfg.training.checkpoint_every_minutes
    if minutes:
        trainer.add_callback(TimeCheckpoints(minutes))
    if not cfg.watchdog.enabled:
        return None
    dog = DivergenceWatchdog(cfg)
    trainer.add_callback(dog)
    return dog

"""Fault injection for tuitune's own tests: honest failures inside the real training loop.

Off unless the environment variable `TUITUNE_FAULTS` holds a JSON object, which users never set.
The engine then adds one `FaultInjector` callback to its Trainer:

- `step_sleep` (seconds): sleep after every optimizer step, so a test can act mid-run.
- `nan_at_step`: make the trainable weights NaN just before that step (as an overflow would), so
  its loss is NaN.
- `oom_at_step` + `oom_above_batch`: raise `torch.OutOfMemoryError` when training reaches that step
  while `per_device_train_batch_size` is above the given size (as a real CUDA OOM would surface).

Disk-full is simulated without a hook: the tests lower RLIMIT_FSIZE for the engine, so the real
checkpoint write fails in the kernel.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from transformers import TrainerCallback

ENV = "TUITUNE_FAULTS"


def configured() -> Optional[dict[str, Any]]:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


class FaultInjector(TrainerCallback):
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    def on_step_begin(self, args, state, control, model=None, **kw):
        s = self.spec
        step = state.global_step + 1  # the step about to run
        if s.get("nan_at_step") and step == int(s["nan_at_step"]) and model is not None:
            import torch

            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad and p.is_floating_point():
                        p.fill_(float("nan"))
        if s.get("oom_at_step") and step >= int(s["oom_at_step"]) \
                and args.per_device_train_batch_size > int(s.get("oom_above_batch", 0)):
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by {ENV} at step {step}, "
                f"batch {args.per_device_train_batch_size})")

    def on_step_end(self, args, state, control, **kw):
        if self.spec.get("step_sleep"):
            time.sleep(float(self.spec["step_sleep"]))

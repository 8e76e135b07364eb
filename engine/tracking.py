"""`training.report_to`: Trainer's own integrations (tensorboard, mlflow, wandb), off by default.

The history database stays the source of truth; these are copies for the tools people already use.
TensorBoard's event files go to `runs/<id>/tensorboard`; MLflow and W&B read their usual environment
variables (MLFLOW_TRACKING_URI; WANDB_API_KEY or WANDB_MODE=offline), as with Trainer itself.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tuitune.config import RunConfig
from tuitune.errors import TuituneError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def prepare(cfg: RunConfig, run_dir: Path, run_id: int) -> None:
    """Check the packages are there (one line if not) and point TensorBoard at the run's folder."""
    for name in cfg.training.report_to:
        pkg = PACKAGES[name]
        if importlib.util.find_spec(pkg) is None:
            raise TuituneError(f"training.report_to has {name} but the {pkg} package is not installed: "
                               f"pip install {pkg}, or remove {name} from training.report_to")
    if "tensorboard" in cfg.training.report_to:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(run_dir) / "tensorboard")


def name_run(trainer, cfg: RunConfig, run_id: int) -> None:
    """The run's name in MLflow / W&B: tuitune's id and name."""
    if cfg.training.report_to:
        trainer.args.run_name = f"tuitune-{run_id}" + (f" {cfg.name}" if cfg.name else "")

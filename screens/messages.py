"""What a screen asks the app to do. Screens post these; the app (`tuitune.app`) navigates, so
no screen imports another screen to open it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from textual.message import Message


@dataclass
class OpenRun(Message):
    """Show a run: live monitor or replay."""

    run_id: int


@dataclass
class NewRun(Message):
    """Open the wizard on a draft config (empty: from scratch; a run's config: a clone)."""

    draft: dict[str, Any] = field(default_factory=dict)


@dataclass
class PickPreset(Message):
    """Choose a preset; its config opens in the wizard."""


@dataclass
class OpenEvaluation(Message):
    """A run's evaluations in depth: confusion matrix, per-class F1, errors, probes."""

    run_id: int
    step: Optional[int] = None  # the evaluation at or before this step (None: the latest)


@dataclass
class PredictRun(Message):
    """Query a completed run."""

    run_id: int


@dataclass
class CompressRun(Message):
    """Quantize, prune and cluster a completed run's model; the table of variants."""

    run_id: int


@dataclass
class CompareRuns(Message):
    """Overlay two or more runs."""

    run_ids: list[int]


@dataclass
class RunLaunched(Message):
    """The wizard started a run: back to the runs list, with its monitor on top."""

    run_id: int


@dataclass
class OpenSweep(Message):
    """Show a sweep's leaderboard (None: the list of sweeps); `launched`: the wizard just started it."""

    name: Optional[str] = None
    launched: bool = False

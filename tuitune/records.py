"""Typed records of the history: a run (`RunRecord`) and an evaluation (`EvalRecord`).

`History` builds them from its rows; the CLI, the UI and the export read attributes.
`RunRecord.to_json()` is the run as the export writes it, under the table's own column names.
`record["key"]` and `record.get("key")` still work for callers not yet moved to attributes
(the engine and its tests); new code reads attributes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

STATUSES = ("queued", "running", "completed", "failed", "stopped", "crashed", "pruned")  # pruned: a sweep cut it short
LIVE = ("queued", "running")


class _Keyed:
    """Read access by column name, for code written against the old dict rows."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass(frozen=True)
class RunRecord(_Keyed):
    """One row of `runs`, its config parsed."""

    id: int
    name: Optional[str] = None
    status: str = "queued"
    task: Optional[str] = None
    model: Optional[str] = None
    method: Optional[str] = None
    dataset: Optional[str] = None
    config: dict[str, Any] = field(default_factory=dict)
    pid: Optional[int] = None
    host: Optional[str] = None
    created_at: Optional[int] = None
    started_at: Optional[int] = None
    ended_at: Optional[int] = None
    heartbeat_at: Optional[int] = None
    run_dir: Optional[str] = None
    step: Optional[int] = 0
    max_steps: Optional[int] = None
    main_metric: Optional[str] = None
    main_value: Optional[float] = None
    baseline_value: Optional[float] = None
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    error: Optional[str] = None
    stop_requested: int = 0
    # what the run cost (filled when it ends): seconds from start to end and in `train()`, the
    # engine process's peak resident memory, the peak GPU memory torch allocated (None without
    # CUDA), and training tokens (non-padding) per second
    wall_time_s: Optional[float] = None
    train_time_s: Optional[float] = None
    peak_ram_bytes: Optional[int] = None
    peak_gpu_bytes: Optional[int] = None
    tokens_per_s: Optional[float] = None
    # a sweep's trial: the sweep's name, the trial number and the sampled parameters
    sweep: Optional[str] = None
    trial: Optional[int] = None
    params: Optional[dict[str, Any]] = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "RunRecord":
        """From a `runs` row (sqlite3.Row or dict); the config and params columns are JSON text."""
        d = dict(row)
        config = d.get("config")
        d["config"] = json.loads(config) if isinstance(config, str) and config else (config or {})
        if isinstance(d.get("params"), str):
            d["params"] = json.loads(d["params"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def model_dir(self) -> Optional[Path]:
        return Path(self.run_dir) / "model" if self.run_dir else None

    @property
    def log_path(self) -> Optional[Path]:
        return Path(self.run_dir) / "engine.log" if self.run_dir else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalRecord(_Keyed):
    """One evaluation of a run: `phase` is baseline, eval (periodic), final or test."""

    run_id: int
    phase: str
    step: int
    time: int
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "EvalRecord":
        d = dict(row)
        return cls(run_id=d["run_id"], phase=d["phase"], step=d["step"], time=d["time"],
                   metrics=json.loads(d["metrics"]) if isinstance(d["metrics"], str) else dict(d["metrics"]))

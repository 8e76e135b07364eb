"""Where tuitune keeps its files: $TUITUNE_HOME (default: the XDG data dir)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("TUITUNE_HOME")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        base = Path(xdg) / "tuitune"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


def db_path() -> Path:
    return home() / "history.db"


def runs_dir() -> Path:
    p = home() / "runs"
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p


def run_dir(run_id: int) -> Path:
    return runs_dir() / str(run_id)


def cache_dir() -> Path:
    """Converted demo models and similar derived assets."""
    p = home() / "cache"
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p

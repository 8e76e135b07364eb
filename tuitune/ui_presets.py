"""Presets for the UI: the shipped ones plus the user's own, saved in $TUITUNE_HOME/presets/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuitune import presets
from tuitune.config import RunConfig, read_yaml
from tuitune.errors import TuituneError


def user_dir() -> Path:
    return presets.user_presets_dir()


def all_presets() -> list[tuple[str, str]]:
    """(label, source) for the picker; source is a shipped name or a user preset path."""
    out = [(f"{n}  {presets.preset_summary(n)}", n) for n in presets.list_presets()]
    out += [(f"{p.stem}  (yours)", str(p)) for p in sorted(user_dir().glob("*.yaml"))]
    return out


def load_preset_dict(source: str) -> dict[str, Any]:
    path = Path(source)
    data = read_yaml(path if path.suffix == ".yaml" else presets.preset_path(source))
    data.setdefault("name", path.stem)
    return data


def save_user_preset(name: str, cfg: RunConfig) -> Path:
    safe = "".join(c for c in name if c.isalnum() or c in "-_.").strip(".")
    if not safe:
        raise TuituneError("a preset name needs letters or digits")
    path = user_dir() / f"{safe}.yaml"
    head = (f"# {safe}: saved from the tuitune UI.\n# Run: tuitune run {path}\n"
            f"# Override: tuitune run {path} --set training.learning_rate=3e-5\n")
    path.write_text(head + cfg.model_copy(update={"name": safe}).to_yaml(), encoding="utf-8")
    return path

"""Shipped presets: YAML files in the `presets` package (found after a plain `pip install` too)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tuitune.errors import TuituneError


def presets_dir() -> Path:
    return Path(str(resources.files("presets")))


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def user_presets_dir() -> Path:
    """The user's own presets (saved from the UI): $TUITUNE_HOME/presets."""
    from tuitune import paths

    p = paths.home() / "presets"
    p.mkdir(parents=True, exist_ok=True)
    return p


def list_user_presets() -> list[str]:
    return sorted(p.stem for p in user_presets_dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    """A shipped preset by name, else one of the user's own."""
    for folder in (presets_dir(), user_presets_dir()):
        path = folder / f"{name}.yaml"
        if path.exists():
            return path
    known = ", ".join(list_presets() + list_user_presets())
    raise TuituneError(f"no preset or file named {name!r}: presets are {known}")


def preset_summary(name: str) -> str:
    """The first comment line of a preset: what it does."""
    for line in preset_path(name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            if text:
                return text
        elif line:
            break
    return ""

"""Presets: the shipped YAML files in this package (`tuitune.presets`, found after a plain
`pip install` too) and the user's own, saved from the UI in $TUITUNE_HOME/presets/."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuitune.errors import TuituneError

if TYPE_CHECKING:
    from tuitune.config import RunConfig


def presets_dir() -> Path:
    return Path(str(resources.files(__name__)))


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



def all_presets() -> list[tuple[str, str]]:
    """(label, source) for the picker; source is a shipped name or a user preset path."""
    out = [(f"{n}  {preset_summary(n)}", n) for n in list_presets()]
    out += [(f"{p.stem}  (yours)", str(p)) for p in sorted(user_presets_dir().glob("*.yaml"))]
    return out


def load_preset_dict(source: str) -> dict[str, Any]:
    path = Path(source)
    data = _read_yaml(path if path.suffix == ".yaml" else preset_path(source))
    data.pop("sweep", None)  # a sweep preset's search is for `tuitune sweep`; the wizard edits its base
    data.setdefault("name", path.stem)
    return data


def save_user_preset(name: str, cfg: "RunConfig") -> Path:
    safe = "".join(c for c in name if c.isalnum() or c in "-_.").strip(".")
    if not safe:
        raise TuituneError("a preset name needs letters or digits")
    path = user_presets_dir() / f"{safe}.yaml"
    head = (f"# {safe}: saved from the tuitune UI.\n# Run: tuitune run {path}\n"
            f"# Override: tuitune run {path} --set training.learning_rate=3e-5\n")
    path.write_text(head + cfg.model_copy(update={"name": safe}).to_yaml(), encoding="utf-8")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    from tuitune.config import read_yaml

    return read_yaml(path)

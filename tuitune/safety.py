"""Keeping secrets and files safe: token scrubbing, owner-only files, paths that stay inside.

- `scrub(text)` replaces Hugging Face tokens (the values of HF_TOKEN and friends, and anything that
  looks like `hf_…`) with `hf_***`, before text reaches the history, a log or a saved config.
- `private_text(path, text)` writes a file readable by its owner only (0600).
- `inside(base, *parts)` joins a path and refuses one that escapes `base` (`..`, absolute parts,
  symlinks pointing out).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tuitune.errors import TuituneError

TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "HF_API_TOKEN")
_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
MASK = "hf_***"


def _secrets() -> list[str]:
    return [v for v in (os.environ.get(k, "").strip() for k in TOKEN_ENV) if len(v) >= 8]


def scrub(text: Any) -> Any:
    """`text` with every token-like value masked; non-strings are returned as they are."""
    if not isinstance(text, str) or not text:
        return text
    for secret in _secrets():
        text = text.replace(secret, MASK)
    return _TOKEN_RE.sub(MASK, text)


def scrub_obj(obj: Any) -> Any:
    """A JSON-like object (a config) with every string scrubbed."""
    if isinstance(obj, dict):
        return {k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_obj(v) for v in obj]
    return scrub(obj)


def private_text(path: Path, text: str) -> None:
    """Write `text` to `path`, owner read/write only, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def inside(base: Path, *parts: str) -> Path:
    """`base/parts…`, refusing any result that is not inside `base` (after resolving symlinks)."""
    root = Path(base).resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        shown = "/".join(str(p) for p in parts)
        raise TuituneError(f"path {shown!r} leaves the folder {root}: give a name inside it")
    return target


class ScrubbingStream:
    """Wraps stdout/stderr of the engine so a token never reaches engine.log."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s: str) -> int:
        self._stream.write(scrub(s))
        return len(s)

    def __getattr__(self, name):
        return getattr(self._stream, name)

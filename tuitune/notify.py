"""Tell the user a followed run has ended: the terminal bell plus OSC 9 and OSC 777 notifications.

iTerm2, WezTerm, kitty, foot, Windows Terminal and others show OSC 9 (`ESC ] 9 ; text BEL`) or
OSC 777 (`ESC ] 777 ; notify ; title ; body BEL`) as a desktop notification, through SSH too;
terminals that know neither ignore them. Inside tmux they are wrapped for passthrough (tmux needs
`set -g allow-passthrough on`). Written only to a terminal, never into a log file or a pipe.

Off with `TUITUNE_NOTIFY=0` in the environment (the UI and the CLI), or `--no-notify` on
`tuitune run`, `tuitune resume` and `tuitune follow`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Optional, TextIO

if TYPE_CHECKING:
    from tuitune.records import RunRecord

ENV = "TUITUNE_NOTIFY"
TITLE = "tuitune"


def enabled(flag: Optional[bool] = None) -> bool:
    """`flag` (a command-line choice) wins; otherwise TUITUNE_NOTIFY (0/false/no/off: off)."""
    if flag is not None:
        return flag
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _clean(text: str, limit: int = 160) -> str:
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", str(text)).replace(";", ",").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tmux(seq: str) -> str:
    return "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def sequences(title: str, body: str, *, tmux: Optional[bool] = None) -> str:
    """The bell, then OSC 9 and OSC 777 carrying the message."""
    title, body = _clean(title, 60), _clean(body)
    oscs = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    if tmux if tmux is not None else bool(os.environ.get("TMUX")):
        oscs = [_tmux(s) for s in oscs]
    return "\a" + "".join(oscs)


def run_message(run: "RunRecord") -> str:
    """One line about how a run ended: `run 12 (bbc) completed: accuracy 0.9712`."""
    name = f" ({run.name})" if run.name else ""
    text = f"run {run.id}{name} {run.status}"
    if run.status == "completed" and run.main_metric and run.main_value is not None:
        text += f": {run.main_metric} {run.main_value:.4g}"
    elif run.error:
        text += f": {run.error}"
    return text


def send(stream: TextIO, body: str, *, title: str = TITLE, flag: Optional[bool] = None) -> bool:
    """Write the notification to `stream` if notifications are on and it is a terminal."""
    if not enabled(flag):
        return False
    try:
        if not stream.isatty():
            return False
        stream.write(sequences(title, body))
        stream.flush()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def send_to_app(app, body: str, *, flag: Optional[bool] = None) -> bool:
    """The same from the Textual UI: through its driver, so it does not tear the screen."""
    if not enabled(flag):
        return False
    driver = getattr(app, "_driver", None)
    if driver is None or getattr(app, "is_headless", True):
        return False
    driver.write(sequences(TITLE, body))
    return True

"""The Textual app. `make_app()` builds it (the CLI and the tests share it); `run_app()` runs it.

Importing this module loads Textual and the screens, never torch & co.: training and prediction
run in `python -m tuitune.engine` processes; history reads go through `tuitune.ui_data.RunStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from textual.app import App
from textual.binding import Binding

from tuitune import screens
from tuitune.screens.dialogs import MessageDialog
from tuitune.screens.runs import RunsScreen
from tuitune.ui_data import RunStore


class TuituneApp(App):
    CSS_PATH = str(Path(screens.__file__).parent / "app.tcss")
    TITLE = "tuitune"
    SUB_TITLE = "fine-tune Hugging Face models"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, store: Optional[RunStore] = None, *, predict_factory: Optional[Callable[[int], Any]] = None,
                 poll_s: float = 0.5):
        super().__init__()
        self.store = store or RunStore()
        if predict_factory is None:
            from tuitune.predict_client import PredictClient

            predict_factory = PredictClient
        self.predict_factory = predict_factory
        self.poll_s = poll_s
        self.draft: dict[str, Any] = {}

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())

    def show_error(self, message: str, title: str = "Error") -> None:
        """One clear message in a dialog (the screen stays as it was)."""
        self.push_screen(MessageDialog(message, title))


def make_app(db_path: Optional[Path] = None, **kwargs: Any) -> TuituneApp:
    return TuituneApp(RunStore(db_path), **kwargs)


def run_app() -> int:
    make_app().run()
    return 0

"""The Textual app. `make_app()` builds it (the CLI and the tests share it); `run_app()` runs it.

Screens post messages (`tuitune.screens.messages`) and the app navigates, so screens never import
each other to open one another. Importing this module loads Textual and the Runs screen, never
torch & co.: training and prediction run in `python -m tuitune.engine` processes; history reads go
through `tuitune.runstore.RunStore`. The other screens load when first opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from textual import on
from textual.app import App
from textual.binding import Binding

from tuitune import screens
from tuitune.runstore import RunStore
from tuitune.screens import messages
from tuitune.screens.dialogs import MessageDialog
from tuitune.screens.runs import RunsScreen

if TYPE_CHECKING:
    from tuitune.records import RunRecord


class TuituneApp(App):
    CSS_PATH = str(Path(screens.__file__).parent / "app.tcss")
    TITLE = "tuitune"
    SUB_TITLE = "fine-tune Hugging Face models · ? keys"
    # At 80 columns a footer may cut its last keys: `?` lists every key of the screen in a side panel.
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False),
                Binding("question_mark", "toggle_keys", "Keys", show=False)]

    def __init__(self, store: Optional[RunStore] = None, *, predict_factory: Optional[Callable[[int], Any]] = None,
                 poll_s: float = 0.5):
        super().__init__()
        self.store = store or RunStore()
        if predict_factory is None:
            from tuitune.predict_client import PredictClient

            predict_factory = PredictClient
        self.predict_factory = predict_factory
        self.poll_s = poll_s
        self.draft: dict[str, Any] = {}  # the wizard's config in progress, in RunConfig's shape
        self.draft_search: dict[str, str] = {}  # fields the wizard marks as searched: key -> SPEC

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())

    def action_toggle_keys(self) -> None:
        """`?`: show (or hide) Textual's key panel: every key of the screen, with what it does."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def run_ended(self, run: "RunRecord") -> None:
        """A run the user was watching ended: a toast here, the bell and a desktop notification
        (OSC 9 / OSC 777; TUITUNE_NOTIFY=0 turns those off) for a user who looked away."""
        from tuitune import notify

        body = notify.run_message(run)
        self.notify(body, severity="information" if run.status == "completed" else "warning")
        notify.send_to_app(self, body)

    def show_error(self, message: str, title: str = "Error") -> None:
        """One clear message in a dialog (the screen stays as it was)."""
        self.push_screen(MessageDialog(message, title))

    # -- navigation: what the screens ask for ------------------------------------------------------
    @on(messages.OpenRun)
    def open_run(self, message: messages.OpenRun) -> None:
        self._monitor(message.run_id)

    @on(messages.NewRun)
    def new_run(self, message: messages.NewRun) -> None:
        self._wizard(message.draft)

    @on(messages.PickPreset)
    def pick_preset(self, message: messages.PickPreset) -> None:
        from tuitune.presets import all_presets
        from tuitune.screens.dialogs import PickDialog

        self.push_screen(PickDialog("Start from a preset", all_presets()), self._preset_chosen)

    def _preset_chosen(self, name: Optional[str]) -> None:
        from tuitune.presets import load_preset_dict
        from tuitune.screens.base import explain

        if not name:
            return
        try:
            draft = load_preset_dict(name)
        except Exception as err:  # a broken user preset: say so
            self.show_error(explain(err))
            return
        self._wizard(draft)

    @on(messages.PredictRun)
    def predict_run(self, message: messages.PredictRun) -> None:
        """Labels and fill-mask: the as-you-type Predict screen; causal LMs (SFT/DPO): the chat."""
        from tuitune.tasks import TASKS

        try:
            task = self.store.run(message.run_id).task
        except Exception as err:  # the run was deleted meanwhile, or the history is busy
            from tuitune.screens.base import explain

            self.show_error(explain(err))
            return
        spec = TASKS.get(task or "")
        if spec is not None and spec.predicts == "generation":
            from tuitune.screens.chat import ChatScreen

            self.push_screen(ChatScreen(message.run_id))
            return
        from tuitune.screens.predict import PredictScreen

        self.push_screen(PredictScreen(message.run_id))

    @on(messages.OpenEvaluation)
    def open_evaluation(self, message: messages.OpenEvaluation) -> None:
        from tuitune.screens.evaluation import EvaluationScreen

        self.push_screen(EvaluationScreen(message.run_id, message.step))

    @on(messages.CompressRun)
    def compress_run(self, message: messages.CompressRun) -> None:
        from tuitune.screens.compress import CompressScreen

        self.push_screen(CompressScreen(message.run_id))

    @on(messages.CompareRuns)
    def compare_runs(self, message: messages.CompareRuns) -> None:
        from tuitune.screens.monitor import CompareScreen

        self.push_screen(CompareScreen(message.run_ids))

    @on(messages.OpenSweep)
    def open_sweep(self, message: messages.OpenSweep) -> None:
        from tuitune.screens.sweep import SweepScreen, SweepsScreen

        while message.launched and len(self.screen_stack) > 1 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()  # out of the wizard that launched it
        self.push_screen(SweepScreen(message.name) if message.name else SweepsScreen())

    @on(messages.RunLaunched)
    def run_launched(self, message: messages.RunLaunched) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()
        self._monitor(message.run_id)

    def _monitor(self, run_id: int) -> None:
        from tuitune.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(run_id))

    def _wizard(self, draft: dict[str, Any]) -> None:
        from tuitune.screens.wizard import ModelScreen

        self.draft = draft
        self.draft_search = {}
        self.push_screen(ModelScreen())


def make_app(db_path: Optional[Path] = None, **kwargs: Any) -> TuituneApp:
    return TuituneApp(RunStore(db_path), **kwargs)


def run_app() -> int:
    make_app().run()
    return 0

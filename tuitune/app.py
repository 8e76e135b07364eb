"""The Textual app (placeholder until the UI lands)."""


def run_app() -> int:
    print("tuitune UI: not built yet; use the CLI (`tuitune --help`)")
    return 0

"""`launcher.call_engine`: the one way the CLI, the UI and the engine itself run a short engine
subcommand (predict, merge, compress, export-model, compress-measure) and read its answer. Real engine
processes; failures are one line with the caller's prefix."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tuitune.errors import TuituneError
from tuitune.launcher import ERROR_CHARS, call_engine, failure_line


def test_an_engine_that_gives_no_answer_is_one_line_with_the_callers_prefix():
    with pytest.raises(TuituneError) as err:
        call_engine(["no-such-command"], error_prefix="compress failed")
    text = str(err.value)
    assert text.startswith("compress failed: ") and "invalid choice" in text and "\n" not in text
    with pytest.raises(TuituneError) as err:
        call_engine(["merge", "abc"])
    assert str(err.value).startswith("engine failed: ") and "invalid int value: 'abc'" in str(err.value)


def test_the_failure_line_is_the_exception_then_the_signal_then_the_last_plain_line():
    # A traceback, then noise printed after it (as a library's exit handler would).
    crash = subprocess.run([sys.executable, "-c", "import atexit, sys\n"
                            "atexit.register(lambda: print('x.py:1: UserWarning: late noise', file=sys.stderr))\n"
                            "def f():\n    raise ValueError('weights do not fit\\nsecond line')\n"
                            "f()"], capture_output=True, text=True)
    assert crash.returncode == 1 and crash.stderr.strip().endswith("late noise")
    assert failure_line(crash.returncode, crash.stderr) == "ValueError: weights do not fit"

    noisy = "x.py:3: UserWarning: casting to float16\n  warnings.warn(\n"
    assert failure_line(-signal.SIGKILL, noisy) == "killed by SIGKILL (out of memory?)"
    assert failure_line(-signal.SIGTERM, "") == "killed by SIGTERM"
    assert failure_line(3, "loading weights\n" + noisy) == "loading weights"
    assert failure_line(3, "") == "exit status 3 and no output"
    long = failure_line(1, "RuntimeError: " + "x" * 1000)
    assert len(long) == ERROR_CHARS and long.endswith("…")

"""One exception type for every error a user can fix: its message is the one line we show."""


class TuituneError(Exception):
    """A user-facing error. `str(err)` is a one-line message that says what to change."""

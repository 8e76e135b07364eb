"""Textual screens, widgets and styles of tuitune. Never imports torch & co."""

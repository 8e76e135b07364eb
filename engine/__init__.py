"""The tuitune engine: the worker process, and the only package that imports torch & co."""

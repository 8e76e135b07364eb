"""The tuitune engine: the worker process, and the only package that imports torch & co.

Start-up: `import peft` (which transformers' Trainer imports) imports bitsandbytes, and bitsandbytes
wraps its CPU kernels in `torch.compile` while it imports, which loads torch's whole compiler stack
(torch._inductor) for kernels that a run without quantization never calls: seconds on every engine
start. While bitsandbytes imports, `torch.compile` hands back a wrapper that compiles on the first
call instead; torch.compile itself compiles on the first call, so nothing else changes.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import sys


def _compile_on_first_call(real_compile):
    def compile(model=None, **kwargs):
        if model is None:  # decorator with arguments: @torch.compile(dynamic=False)
            return lambda fn: compile(fn, **kwargs)
        if not inspect.isfunction(model):  # a module compiles into an OptimizedModule: leave it as it was
            return real_compile(model, **kwargs)
        compiled = None

        @functools.wraps(model)
        def wrapper(*args, **kw):
            nonlocal compiled
            if compiled is None:
                try:
                    compiled = real_compile(model, **kwargs)
                except Exception:  # noqa: BLE001 - refused where it was asked for: the plain function, as before
                    compiled = model
            return compiled(*args, **kw)

        return wrapper

    return compile


class _DeferCompileLoader(importlib.abc.Loader):
    """The real loader of bitsandbytes, run with `torch.compile` deferred to first call."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # resources and reloads see the real one
        import torch

        real = torch.compile
        torch.compile = _compile_on_first_call(real)
        try:
            self.loader.exec_module(module)
        finally:
            torch.compile = real

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _BitsandbytesFinder(importlib.abc.MetaPathFinder):
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "bitsandbytes":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _DeferCompileLoader(spec.loader)
        return spec


if "bitsandbytes" not in sys.modules and not any(isinstance(f, _BitsandbytesFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _BitsandbytesFinder())

"""The generation settings for causal-LM predict, shared by `tuitune predict` (which forwards them),
`python -m tuitune.engine predict` (which uses them) and the engine's `serve` (which accepts them per
request), so the three cannot drift apart."""

from __future__ import annotations

import argparse

# (flag, type, help); unset ones keep Predictor.generate's defaults
GENERATION_FLAGS = [
    ("--max-new-tokens", int, "how many tokens to generate at most"),
    ("--temperature", float, "sampling temperature (> 0)"),
    ("--top-p", float, "nucleus sampling: keep the smallest set of tokens with this total probability"),
    ("--repetition-penalty", float, "above 1 discourages repeating tokens"),
    ("--seed", int, "seed for sampling"),
    ("--system", str, "a system message for the chat template"),
]

# Predictor.generate's keyword arguments that these settings fill; also what `serve` accepts per request.
GENERATION_KEYS = tuple(flag[2:].replace("-", "_") for flag, _, _ in GENERATION_FLAGS) + ("do_sample",)


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation (sft / dpo runs)")
    for flag, kind, help_ in GENERATION_FLAGS:
        group.add_argument(flag, type=kind, help=help_)
    group.add_argument("--greedy", dest="do_sample", action="store_false", default=None,
                       help="no sampling: always the likeliest token")


def generation_kwargs(args: argparse.Namespace) -> dict:
    """The settings given on the command line, as Predictor.generate's keyword arguments."""
    return {k: getattr(args, k) for k in GENERATION_KEYS if getattr(args, k) is not None}


def generation_argv(args: argparse.Namespace) -> list[str]:
    """The same settings as command-line arguments, to forward to the engine."""
    argv: list[str] = []
    for key, value in generation_kwargs(args).items():
        if key == "do_sample":
            argv += [] if value else ["--greedy"]
        else:
            argv += ["--" + key.replace("_", "-"), str(value)]
    return argv

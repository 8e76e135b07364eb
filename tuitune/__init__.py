"""tuitune: fine-tune Hugging Face models from the terminal.

This package is the light core (config, presets, history, CLI, app). It never imports torch,
transformers, peft, trl, datasets or bitsandbytes: those live in the `engine` package, which
runs in its own process.
"""

__version__ = "0.1.0"

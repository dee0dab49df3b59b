# Two entry points: `make demo` (set up, then the traffic example end to end) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the runtime's native kernel, compiled by pip install (runtime/setup.py): a change reinstalls
NATIVE_SRC := runtime/setup.py runtime/edgecomp_runtime/native/kernel.c

.PHONY: demo test examples bench bench-tune bench-passes bench-int4 bench-tensorrt bench-fl \
	bench-arm bench-stream bench-gateway arm64-check lint clean system-deps runtime-envs

PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt
# Every toolchain extra: the core and the runtime stay light, the tests cover every backend.
EXTRAS := onnx,tflite,tensorrt,executorch,passes,openvino,tune,fl,track,dev

$(STAMP): pyproject.toml runtime/pyproject.toml constraints.txt $(NATIVE_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e 'runtime[onnx,litert,serve,signing]' -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/traffic/run.py

# Runtime-only environments (no torch, no compiler): the runtime's tests on the oldest and newest
# Python it supports, and the oldest onnxruntime it allows (run by tests/runtime/test_extras.py).
# The interpreters come from PATH or pyenv; a missing one fails the build.
RT_PYTHONS  := 3.10 3.13
RT_VENVS    := $(foreach v,$(RT_PYTHONS),.venv-py$(v))
RT_EXTRAS   := onnx,serve,signing
ORT_MIN     := $(shell sed -n 's/.*"onnxruntime>=\([0-9.]*\)".*/\1/p' runtime/pyproject.toml | head -1)
PYENV_ROOT  ?= $(HOME)/.pyenv
find-python = $(firstword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1)))

.venv-py%/.installed: runtime/pyproject.toml constraints.txt $(NATIVE_SRC)
	@test -n "$(call find-python,$*)" || { echo "error: Python $* not found on PATH or in $(PYENV_ROOT)/versions (pyenv install $*)" >&2; exit 1; }
	test -x $(@D)/bin/python || $(call find-python,$*) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -c constraints.txt -e './runtime[$(RT_EXTRAS)]' pytest
	touch $@

.venv-ort-min/.installed: runtime/pyproject.toml constraints.txt $(NATIVE_SRC)
	@test -n "$(call find-python,3.10)" || { echo "error: Python 3.10 not found on PATH or in $(PYENV_ROOT)/versions (pyenv install 3.10)" >&2; exit 1; }
	test -x $(@D)/bin/python || $(call find-python,3.10) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet -c constraints.txt -e './runtime' 'onnxruntime==$(ORT_MIN)'
	touch $@

runtime-envs: $(RT_VENVS:=/.installed) .venv-ort-min/.installed

# The gateway-service tests run a real MQTT broker (Debian's mosquitto) on 127.0.0.1, the
# `edgecomp bench --device` tests a private OpenSSH server (Debian's openssh-server, never started
# as a service); without them they skip with the reason.
system-deps:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { $$(command -v sudo) apt-get update -qq && $$(command -v sudo) apt-get install -y -qq mosquitto; } || \
	  echo "warning: mosquitto could not be installed; the MQTT tests will skip"
	@test -x /usr/sbin/sshd || \
	  { $$(command -v sudo) apt-get update -qq && $$(command -v sudo) apt-get install -y -qq openssh-server; } || \
	  echo "warning: openssh-server could not be installed; the SSH device tests will skip"

test: $(STAMP) system-deps runtime-envs
	$(BIN)/python -m pytest -q
	for venv in $(RT_VENVS); do $$venv/bin/python -m pytest -q -p no:cacheprovider tests/runtime || exit 1; done

examples: $(STAMP)
	$(BIN)/python examples/traffic/run.py
	$(BIN)/python examples/weather/run.py
	$(BIN)/python examples/finance/run.py
	$(BIN)/python examples/federated/run.py
	$(BIN)/python examples/gateway/run.py

bench: $(STAMP)
	$(BIN)/python benchmarks/x86_compare.py

# edgecomp tune against grid search and neural-compressor's autotune (a peer, installed only here)
bench-tune: $(STAMP)
	$(PIP) neural-compressor-pt==3.10 neural-compressor==3.10
	$(BIN)/python benchmarks/tune_compare.py

# These read the traffic checkpoints that `make demo` trains (examples/traffic/out/checkpoints).
bench-passes: $(STAMP)
	$(BIN)/python benchmarks/passes_traffic.py --checkpoints examples/traffic/out/checkpoints \
	  --archs lstm,gru,tcn

bench-int4: $(STAMP)
	$(BIN)/python benchmarks/int4_mixed.py

bench-tensorrt: $(STAMP)
	$(BIN)/python benchmarks/tensorrt_traffic.py

bench-fl: $(STAMP)
	$(BIN)/python benchmarks/fl_compare.py --fedprox 0.001

# ARM timings here are LiteRT on this x86 host: only the ratios mean anything
bench-arm: $(STAMP)
	$(BIN)/python benchmarks/arm_compare.py --checkpoints examples/traffic/out/checkpoints

bench-stream: $(STAMP) system-deps
	$(BIN)/python benchmarks/stream_cost.py
	$(BIN)/python benchmarks/footprint.py

# The gateway under load; the example builds the traffic TCN int8 with its step model first
bench-gateway: $(STAMP) system-deps
	$(BIN)/python examples/gateway/run.py
	$(BIN)/python benchmarks/gateway_load.py --artifact examples/gateway/out/traffic-tcn-int8.edgepkg

# The runtime inside a real aarch64 Python under qemu-user (downloads ~100 MB into .cache/arm64)
arm64-check: $(STAMP)
	$(BIN)/python scripts/arm64-check --archs tcn

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(RT_VENVS) .venv-ort-min examples/*/out benchmarks/out

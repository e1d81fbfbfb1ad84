# The two set-up commands of README: `make demo` and `make test`. Both create .venv on first use.
# ACCEL=gpu installs the CUDA builds of the same stack (see launch/install.sh, the one place).
VENV ?= .venv
ACCEL ?= cpu
STAMP := $(VENV)/.installed-$(ACCEL)
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: demo test install plan clean

$(STAMP): pyproject.toml launch/install.sh
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	. $(VENV)/bin/activate && bash launch/install.sh $(ACCEL)
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/distrec run configs/ctr/smoke.yaml

plan: $(STAMP)
	$(VENV)/bin/distrec plan configs/ctr/smoke.yaml

test: $(STAMP)
	. $(VENV)/bin/activate && bash launch/test.sh

clean:
	rm -rf runs .cache .pytest_cache

# otel-injector: `make run` serves the webhook on self-signed dev certificates; `make test` runs every check.
CARGO ?= cargo
VENV ?= .venv
PREFIX ?= $(HOME)/.local
KUBERNETES_VALIDATE_VERSION := 1.37.0
KUBERNETES_VALIDATE := $(CURDIR)/$(VENV)/bin/kubernetes-validate

.PHONY: run test tools kubectl lint fmt fmt-check readme bench loadtest certs install-plugin clean

run: ## the webhook on https://127.0.0.1:8443 (dev certs), health and metrics on http://127.0.0.1:9090
	$(CARGO) run --locked -- serve --dev-certs --listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9090

test: tools fmt-check lint ## formatting, clippy, unit, property, integration and corpus tests
	KUBERNETES_VALIDATE=$(KUBERNETES_VALIDATE) $(CARGO) test --locked

tools: $(KUBERNETES_VALIDATE) kubectl ## what the tests need: kubernetes-validate (PyPI, in .venv) and kubectl

$(KUBERNETES_VALIDATE):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)

kubectl:
	@command -v kubectl >/dev/null || { \
	  echo "kubectl not found: installing Debian's kubernetes-client"; \
	  apt-get update -qq && apt-get install -y -qq kubernetes-client; }

lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

readme: ## regenerate the CLI reference in README.md from clap
	UPDATE_README=1 $(CARGO) test --locked --test readme

bench: ## criterion benches of the engine and the admission path, then the TLS load test
	$(CARGO) bench --locked --bench engine
	scripts/loadtest.sh

loadtest:
	scripts/loadtest.sh

certs: ## a CA and serving certificate for Service otel-injector in namespace otel-injector, into ./certs
	$(CARGO) run --locked -- certs --out-dir certs

install-plugin: ## installs otel-injector and the kubectl plugin kubectl-otel_inject into $(PREFIX)/bin
	$(CARGO) install --locked --path . --root $(PREFIX)
	ln -sf otel-injector $(PREFIX)/bin/kubectl-otel_inject
	@echo "kubectl otel-inject -f deploy.yaml  (make sure $(PREFIX)/bin is on PATH)"

clean:
	$(CARGO) clean
	rm -rf $(VENV) certs

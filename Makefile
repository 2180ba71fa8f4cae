# The two commands of the README: `make demo` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# -s -w: no symbol table or DWARF (about 2 MiB of flanneld that is never
# loaded; panics and profiles still name functions), as the image builds it.
LDFLAGS  := -s -w -X main.version=$(VERSION)
# grpcnotrace leaves out gRPC's x/net/trace (and with it html/template):
# 3.6 MiB less code, and on kernels that map an executable's page cache
# in large folios, 3.6 MiB less resident memory. flanneld never turns
# gRPC tracing on. CGO_ENABLED=0 links statically, as the image does: no
# libc mapped (another 1.4 MiB resident).
TAGS     := grpcnotrace
BIN      := bin
FUZZTIME ?= 3s

.PHONY: all build deps kube-bins etcd2 test unit fuzz demo demo-up demo-down bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/flanneld ./cmd/flanneld
	$(GO) build -ldflags "-X main.Version=$(VERSION)" -o $(BIN)/flannel ./cmd/cni-plugin
	$(GO) build -o $(BIN)/lab-etcd ./cmd/lab-etcd
	$(GO) build -o $(BIN)/flannel-lab ./cmd/flannel-lab
	$(GO) build -o $(BIN)/flannel-demo ./cmd/flannel-demo
	$(GO) build -ldflags "-s -w" -o $(BIN)/flannelctl ./cmd/flannelctl

deps:
	./scripts/deps.sh

# kube-apiserver and kubectl for the Kubernetes test rig (pkg/lab), from
# tools/kube; about 15 minutes cold, seconds once built.
kube-bins:
	GO=$(GO) BIN=$(BIN) ./scripts/kube-bins.sh

# etcd 3.5 with the v2 API, for the tests of flannel v0.11 clusters
# (pkg/lab StartEtcdV2), from tools/etcd2; about 2 minutes cold.
etcd2:
	GO=$(GO) BIN=$(BIN) ./scripts/etcd2-bin.sh

# The whole suite: unit tests, privileged lab tests (as root), then every
# fuzz target for a short time.
test: deps build kube-bins etcd2
	LAB_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 2 -timeout 30m ./...
	$(MAKE) fuzz

unit:
	$(GO) test -short ./...

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) && continue; \
	    echo "$$out"; \
	    echo "fuzz $$f failed; running it again (a crasher it found is now in testdata and fails again)"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

demo: deps build kube-bins
	$(BIN)/flannel-demo --bin $(CURDIR)/$(BIN)
	$(BIN)/flannel-demo --bin $(CURDIR)/$(BIN) --kube

demo-up: deps build
	$(BIN)/flannel-demo --bin $(CURDIR)/$(BIN) --keep --dir /tmp/flannel-demo

demo-down:
	$(BIN)/flannel-lab down --dir /tmp/flannel-demo

# The kube-mode case needs kube-apiserver (kube-bins; seconds once built).
bench: deps build kube-bins
	LAB_BIN_DIR=$(CURDIR)/$(BIN) $(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -rf $(BIN)

# The two commands of the README: `make demo` and `make test`.
GO       ?= go
# The version is the git tag: git describe, with -dirty for local changes.
# Empty outside a git checkout; pkg/version then falls back to the build
# info the Go toolchain records, and to "dev".
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
# -s -w: no symbol table or DWARF (about 2 MiB of flanneld that is never
# loaded; panics and profiles still name functions), as the image builds it.
LDFLAGS  := -s -w -X github.com/flannelng/flannel/pkg/version.Version=$(VERSION)
# grpcnotrace leaves out gRPC's x/net/trace (and with it html/template):
# 3.6 MiB less code, and on kernels that map an executable's page cache
# in large folios, 3.6 MiB less resident memory. flanneld never turns
# gRPC tracing on. CGO_ENABLED=0 links statically, as the image does: no
# libc mapped (another 1.4 MiB resident), and the CNI plugin runs on hosts
# whose libc we do not know. make release builds with the same flags, so
# its native-architecture build reuses this one's compiled packages.
TAGS     := grpcnotrace
GOBUILD  = CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)"
BIN      := bin
FUZZTIME ?= 3s

# The image, and the tag of it that the manifests in dist/ run: the newest
# release heading of CHANGELOG.md ("## [v0.2.0] - 2027-01-15"), v0.1.0
# until the first. That heading is the one place a release writes its tag
# by hand (with `git tag`); `make pin-image` copies it into the manifests
# and the docs, and dist's tests fail while they disagree.
IMAGE       ?= ghcr.io/flannelng/flannel
RELEASE_TAG := $(or $(shell sed -n 's/^\#\# \[\(v[0-9][^]]*\)\].*/\1/p' CHANGELOG.md 2>/dev/null | head -n 1),v0.1.0)
IMAGE_REFS  := dist/kube-flannel.yml dist/kube-flannel-etcd.yml dist/Dockerfile dist/README.md docs/install.md
# make release: these GOARCHes (arm is GOARM=7), into RELEASE_DIR.
RELEASE_ARCHES  ?= amd64 arm64 arm ppc64le s390x
RELEASE_DIR     ?= $(BIN)/release
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x

.PHONY: all build deps kube-bins etcd2 test unit fuzz demo demo-up demo-down bench clean release image pin-image print-image

all: build

# Every binary the docs name, static. lab-etcd keeps gRPC tracing (it is
# an etcd server, for the tests).
build:
	$(GOBUILD) -o $(BIN)/flanneld ./cmd/flanneld
	$(GOBUILD) -o $(BIN)/flannel ./cmd/cni-plugin
	$(GOBUILD) -o $(BIN)/flannelctl ./cmd/flannelctl
	$(GOBUILD) -o $(BIN)/flannel-lab ./cmd/flannel-lab
	$(GOBUILD) -o $(BIN)/flannel-demo ./cmd/flannel-demo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/lab-etcd ./cmd/lab-etcd

# Static binaries for every RELEASE_ARCHES, the tarballs, the manifests of
# this version and their SHA-256 sums (scripts/release.sh names them).
# Release from a tag: git tag v0.2.0 && make release.
release:
	GO="$(GO)" VERSION="$(VERSION)" ARCHES="$(RELEASE_ARCHES)" OUT="$(RELEASE_DIR)" IMAGE="$(IMAGE)" ./scripts/release.sh

# The multi-arch image, cross-compiled (dist/Dockerfile); needs docker
# buildx. IMAGE_FLAGS=--push to publish it.
image:
	docker buildx build -f dist/Dockerfile --platform $(IMAGE_PLATFORMS) \
	  --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) $(IMAGE_FLAGS) .

pin-image:
	sed -i 's#$(IMAGE):v[0-9][0-9A-Za-z.+-]*#$(IMAGE):$(RELEASE_TAG)#g' $(IMAGE_REFS)

print-image:
	@echo $(IMAGE):$(RELEASE_TAG)

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

# kubeha — make targets. Only Go is needed; tools are pinned and fetched
# through the Go module proxy.
GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X github.com/kubeha/kubeha/cmd/kubeha/cli.version=$(VERSION)


.PHONY: build test lint bench fuzz schema tools demo soak kube-binaries

# Optional test tools: shellcheck lints the masters' startup script. It is
# installed from Debian's packages when this runs as root with apt-get;
# otherwise its test says it is skipped.
tools:
	@command -v shellcheck >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq shellcheck >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq shellcheck >/dev/null 2>&1)); } || \
		echo "shellcheck is not installed: the startup-script lint test will be skipped"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/kubeha ./cmd/kubeha

test: tools kube-binaries
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Fuzz the spec loader for FUZZTIME (the seed corpus runs in every `make test`).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./spec -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)

# A watch soak on the emulator (docs/reliability.md): a 5-master cluster
# with remediation on, one member flapping and one crashed for good, a
# writer putting a key every 100ms, for SOAK.
SOAK ?= 10m
soak:
	KUBEHA_SOAK=$(SOAK) $(GO) test ./e2e -run '^TestWatchSoak$$' -count=1 -v -timeout 60m

# Regenerate spec/cluster.schema.json from the Go types.
schema:
	$(GO) generate ./spec

# The real control-plane binaries the emulator's masters run (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler), built once into
# .kubeha/bin (about 7 minutes on 2 cores) and kept.
kube-binaries:
	./hack/kube-binaries.sh

# A tour on the emulator: 1 -> 3 -> crash a member -> replace -> 5 -> 3 -> 1.
demo:
	./hack/demo.sh

# NanoFind build entry points. `make demo` and `make test` install what is missing, then build in
# release mode with the CPU flags the SIMD kernels need.
SHELL := /bin/bash
SWIFT ?= swift
# 16-lane vectors where the CPU has AVX-512, 8 lanes otherwise (see Package.swift).
SIMD_FLAG := $(shell grep -q avx512f /proc/cpuinfo 2>/dev/null && echo "-Xswiftc -DNF_SIMD16")
SWIFTFLAGS := -c release $(SIMD_FLAG)
BIN := .build/release/nanofind
DEMO_INPUT := ../shared/reference/pynanofind/fixtures/input_lattice_512.npy
DEMO_MODEL := ../shared/reference/pynanofind/models/unet32_AuCdSeDots_09_final.h5

.PHONY: all deps build test test-long demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFTFLAGS) --product nanofind

test: deps
	$(SWIFT) build $(SWIFTFLAGS) --product nanofind
	$(SWIFT) test $(SWIFTFLAGS) --disable-swift-testing
ifneq ($(SIMD_FLAG),)
	@echo "kernels again with 8-lane vectors (the AVX2 / arm64 code path), in .build/simd8"
	$(SWIFT) build -c release --build-path .build/simd8 --build-tests
	$(SWIFT) test -c release --build-path .build/simd8 --skip-build --disable-swift-testing --filter "NanoTensorTests|NanoNetTests"
endif

# Slow checks (full robustness corpora, long training) are behind NANOFIND_LONG_TESTS=1.
test-long: deps
	NANOFIND_LONG_TESTS=1 $(SWIFT) test $(SWIFTFLAGS) --disable-swift-testing

demo: build
	@mkdir -p out/demo
	@if [ -f "$(DEMO_INPUT)" ] && [ -f "$(DEMO_MODEL)" ]; then \
	  $(BIN) segment "$(DEMO_INPUT)" -o out/demo --model "$(DEMO_MODEL)"; \
	else \
	  echo "demo: ../shared is not present; run: $(BIN) segment IMAGE -o out/demo --model MODEL.h5"; \
	fi

bench: build
	$(BIN) bench --json

clean:
	rm -rf .build out

# NanoFind build entry points. `make demo` and `make test` install what is missing, then build in
# release mode with the CPU flags the SIMD kernels need.
SHELL := /bin/bash
SWIFT ?= swift
# 16-lane vectors where the CPU has AVX-512, 8 lanes otherwise (see Package.swift); make test also runs the
# kernel and network tests at the narrower widths this CPU can execute (8 and 4 lanes).
# (Linux: /proc/cpuinfo's flags; an Intel Mac: sysctl's leaf-7 features; Apple silicon: NEON, 4 lanes.)
SIMD_FLAG := $(shell (grep -q avx512f /proc/cpuinfo 2>/dev/null || sysctl -n machdep.cpu.leaf7_features 2>/dev/null | grep -q AVX512F) \
	&& echo "-Xswiftc -DNF_SIMD16")
# On arm64 the default build is the 4-lane one already.
ARM64 := $(filter arm64 aarch64,$(shell uname -m))
SWIFTFLAGS := -c release $(SIMD_FLAG)
# Homebrew's pkg-config for the build on Apple silicon, where its installer put it even when
# this shell's PATH does not name /opt/homebrew/bin yet (Intel Homebrew's /usr/local/bin is).
ifneq ($(wildcard /opt/homebrew/bin/brew),)
export PATH := /opt/homebrew/bin:$(PATH)
endif
BIN := .build/release/nanofind
SIM := ../shared/data/sim-v1
# The default model's recipe (Models/README.md): robust normalisation and augmentation, 256² crops,
# batch 8, Adam 1e-3 with a cosine decay, 12 epochs of 1000 steps, the best validation epoch kept.
MODEL_FLAGS := --tile 256 --batch-size 8 --lr 1e-3 --lr-schedule cosine --epochs 12 --steps-per-epoch 1000 \
	--normalise median3+percentile --augment robust --patience 12 --seed 1

.PHONY: all deps build test test-long test-cluster demo bench model fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFTFLAGS) --product nanofind

test:
	@bash scripts/install-deps.sh --test
	$(SWIFT) build $(SWIFTFLAGS) --product nanofind
	$(SWIFT) test $(SWIFTFLAGS) --disable-swift-testing
ifneq ($(SIMD_FLAG),)
	@echo "kernels again with 8-lane vectors (the AVX2 code path), in .build/simd8"
	$(SWIFT) build -c release --build-path .build/simd8 --build-tests
	$(SWIFT) test -c release --build-path .build/simd8 --skip-build --disable-swift-testing --filter "NanoTensorTests|NanoNetTests"
endif
ifeq ($(ARM64),)
	@echo "kernels again with 4-lane vectors (the arm64 NEON code path), in .build/simd4"
	$(SWIFT) build -c release --build-path .build/simd4 --build-tests -Xswiftc -DNF_SIMD4
	$(SWIFT) test -c release --build-path .build/simd4 --skip-build --disable-swift-testing --filter "NanoTensorTests|NanoNetTests"
endif

# A single-node SLURM cluster (slurm-wlm, munge; installed if missing) runs a 4-task array of
# `segment --shard K/4`; the merged result must equal a single-process run. Needs root.
test-cluster: build
	bash scripts/slurm-test.sh

# Coverage-guided fuzzing of one reader or model parser under AddressSanitizer (libFuzzer):
#   make fuzz TARGET=mrc SECONDS=600
# TARGET: mrc tiff dm ser emi png npy safetensors emd h5model (Sources/FuzzTargets/FuzzTarget.swift).
# The seed corpus is written by the tests' own writers (testWriteFuzzSeeds, into .build/fuzz-seeds);
# the corpus the fuzzer grows stays in .build/fuzz-corpus. Any input that crashes, hangs (10 s), or
# allocates more than 512 MB at once lands in Tests/FuzzFindings/TARGET/, which make test replays.
# A request too large for any allocator fails as it does under glibc (returns NULL: libhdf5 then
# reports an error) instead of stopping the run (ASan's allocator_may_return_null).
TARGET ?= mrc
SECONDS ?= 60
FUZZ_BIN := .build/fuzz/release/nanofind-fuzz
# The HDF5 targets meet faults inside libhdf5 itself, which nanofind contains by reading HDF5 in a
# child process: fork mode keeps fuzzing past each one (every one is still saved).
FUZZ_MODE := $(if $(filter emd h5model,$(TARGET)),-fork=1 -ignore_crashes=1,)
fuzz: deps
	$(SWIFT) build -c release --build-path .build/fuzz --product nanofind-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING $(SIMD_FLAG)
	@if [ ! -d .build/fuzz-seeds/$(TARGET) ]; then \
		$(SWIFT) build $(SWIFTFLAGS) --build-tests && \
		NANOFIND_FUZZ_SEEDS=$(CURDIR)/.build/fuzz-seeds $(SWIFT) test $(SWIFTFLAGS) --skip-build --disable-swift-testing \
			--filter testWriteFuzzSeeds; fi
	@test -d .build/fuzz-seeds/$(TARGET) || { echo "make fuzz: no seeds for TARGET=$(TARGET)"; exit 2; }
	@mkdir -p .build/fuzz-corpus/$(TARGET) Tests/FuzzFindings/$(TARGET)
	NANOFIND_FUZZ_TARGET=$(TARGET) ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 $(FUZZ_BIN) -max_total_time=$(SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 $(FUZZ_MODE) -artifact_prefix=Tests/FuzzFindings/$(TARGET)/ \
		.build/fuzz-corpus/$(TARGET) .build/fuzz-seeds/$(TARGET)

# Slow checks (full robustness corpora, long training) are behind NANOFIND_LONG_TESTS=1.
test-long: deps
	NANOFIND_LONG_TESTS=1 $(SWIFT) test $(SWIFTFLAGS) --disable-swift-testing

# The main job on built-in data: simulated micrographs (four materials, two the default model
# never saw), segmented with the default model and compared with the truth.
demo: build
	$(BIN) demo -o out/demo

# Reproduces Models/default.safetensors (and default_train_log.csv, default_loss_curve.png beside it) from
# ../shared/data/sim-v1/train, then evaluates it on the test split.
model: build
	@test -d "$(SIM)/train" || { echo "make model: needs $(SIM)/train (../shared beside the checkout)"; exit 1; }
	@mkdir -p Models
	$(BIN) train $(SIM)/train -o Models/default.safetensors $(MODEL_FLAGS)
	$(BIN) evaluate $(SIM)/test --model Models/default.safetensors -o Models/evaluation

bench: build
	$(BIN) bench

clean:
	rm -rf .build out

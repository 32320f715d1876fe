# Petrel: the two commands a newcomer types are `make run` and `make test`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PYTHON     ?= /usr/bin/python3
FUZZ_SECONDS ?= 30
RUN_ARGS   ?= -v

.PHONY: all deps build run test unit integration test-asan test-tsan fuzz fuzz-smoke clean

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# The embedded defaults plus persistence under ./data (conf/make-run.conf).
run: build
	./$(BUILD)/petrel -c conf/make-run.conf $(RUN_ARGS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

integration: build
	PETREL_BIN=$(abspath $(BUILD)/petrel) $(PYTHON) -m pytest -q --timeout=180 tests/integration

test: unit integration

# The whole suite again under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPETREL_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PETREL_BIN=$(abspath $(ASAN_BUILD)/petrel) PETREL_SANITIZED=1 \
	  $(PYTHON) -m pytest -q --timeout=180 tests/integration

# The whole suite under ThreadSanitizer: workers share the router, the
# retained store, the inboxes and (direct hand-over) each other's sessions.
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPETREL_TSAN=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
	  PETREL_BIN=$(abspath $(TSAN_BUILD)/petrel) PETREL_SANITIZED=1 \
	  $(PYTHON) -m pytest -q --timeout=180 tests/integration

$(FUZZ_BUILD)/Makefile: CMakeLists.txt
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPETREL_FUZZ=ON

fuzz-build: deps $(FUZZ_BUILD)/Makefile
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Run every fuzz target for FUZZ_SECONDS each, from its seed corpus. The
# fuzzer's progress goes to $(FUZZ_BUILD)/logs/NAME.log; a crash prints its tail.
fuzz: fuzz-build
	@set -e; mkdir -p $(FUZZ_BUILD)/logs; for f in $(FUZZ_BUILD)/fuzz_*; do \
	  [ -f $$f ] && [ -x $$f ] || continue; \
	  name=$$(basename $$f); log=$(FUZZ_BUILD)/logs/$$name.log; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$name; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  if ! $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=$(FUZZ_BUILD)/ \
	      $(FUZZ_BUILD)/corpus/$$name tests/fuzz/corpus/$$name > $$log 2>&1; then \
	    tail -n 60 $$log; exit 1; \
	  fi; \
	  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss)" $$log; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)

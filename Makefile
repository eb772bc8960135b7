# gort: the one entry point. `make run` and `make test` install what they
# need (tools/deps.sh, apt-get), build, and run. See README.md.

CXX      ?= g++
BUILD    := build
OBJ      := $(BUILD)/obj
WARN     := -Wall -Wextra -Werror
CXXSTD   := -std=c++20
OPT      ?= -O2 -g
# Sanitizer flags for the library, the tests and the programs linked to gort
# (empty but for `make sanitize`, which builds into $(BUILD)-ubsan).
SAN      ?=
# The library: no builtin malloc knowledge (gcc would otherwise be free to
# turn malloc+memset into a call to our own calloc), hidden symbols except
# the API, one initial-exec TLS word.
LIBFLAGS := $(CXXSTD) $(OPT) $(WARN) -fPIC -Iinclude -I. -fvisibility=hidden \
            -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free \
            -fno-plt -fno-exceptions -fno-rtti $(SAN)
TESTFLAGS := $(CXXSTD) -O1 -g $(WARN) -Iinclude -I. -DBOOST_TEST_DYN_LINK -fno-builtin-malloc \
             -fno-builtin-free -fno-builtin-calloc -fno-builtin-realloc $(SAN)
BENCHFLAGS := $(CXXSTD) -O2 -g $(WARN) -Iinclude -pthread

ALLOC_SRCS   := $(wildcard alloc/*.cc)
GC_SRCS      := $(wildcard gc/*.cc)
RUNTIME_SRCS := $(wildcard runtime/*.cc)
RUNTIME_ASM  := $(wildcard runtime/*.S)
POOL_SRCS    := $(wildcard pool/*.cc)
LIB_OBJS     := $(ALLOC_SRCS:%.cc=$(OBJ)/%.o) $(GC_SRCS:%.cc=$(OBJ)/%.o) $(RUNTIME_SRCS:%.cc=$(OBJ)/%.o) \
                $(RUNTIME_ASM:%.S=$(OBJ)/%.o) $(POOL_SRCS:%.cc=$(OBJ)/%.o)

FORMAT_FILES = $(wildcard test/*.h test/install/*/*.cc alloc/*.cc alloc/*.h gc/*.cc gc/*.h runtime/*.cc runtime/*.h include/gort/*.h test/*/*.cc test/*/*.h test/progs/*.c \
                 bench/*.cc bench/*/*.cc bench/*/*.h pool/*.cc pool/*.h)

.PHONY: all deps build lib test run bench clean install format check-format stress
all: build

deps:
	@./tools/deps.sh

build: lib tests benches $(BUILD)/bin/gort

# The command-line tool: gort run, gort bench.
$(BUILD)/bin/gort: bench/gort.cc Makefile
	@mkdir -p $(dir $@)
	$(CXX) $(CXXSTD) -O2 $(WARN) -DGORT_SOURCE_DIR='"$(CURDIR)"' -o $@ $<

lib: $(BUILD)/lib/libgort.so $(BUILD)/lib/libgort.a

# operator new must be able to throw: new.cc keeps exceptions. So does the
# scheduler: a task's exception is caught at its entry, and channels throw
# gort::ChanClosed.
$(OBJ)/alloc/new.o: LIBFLAGS := $(filter-out -fno-exceptions -fno-rtti,$(LIBFLAGS))
$(RUNTIME_SRCS:%.cc=$(OBJ)/%.o): LIBFLAGS := $(filter-out -fno-exceptions -fno-rtti,$(LIBFLAGS))

# gort's own code goes in one section, gort_text, whatever the link: the
# scheduler never preempts a task there (runtime/preempt.cc). Every text
# section of an object is renamed, the out-of-line copies of inline and
# template functions (comdat .text._Z...) included: the runtime calls those
# under its locks too.
GORT_TEXT = objcopy $$(objdump -h $@ | awk '$$2 ~ /^\.text/ { printf "--rename-section %s=gort_text,alloc,contents,load,readonly,code ", $$2 }') $@

$(OBJ)/%.o: %.cc $(wildcard alloc/*.h gc/*.h runtime/*.h pool/*.h include/gort/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CXX) $(LIBFLAGS) -c $< -o $@
	$(GORT_TEXT)

$(OBJ)/%.o: %.S Makefile
	@mkdir -p $(dir $@)
	$(CXX) -c $< -o $@
	$(GORT_TEXT)

$(BUILD)/lib/libgort.so: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CXX) -shared $(SAN) -o $@ $^ -Wl,-z,now -Wl,-soname,libgort.so -pthread

$(BUILD)/lib/libgort.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- tests ----
TEST_ALLOC_SRCS := $(wildcard test/alloc/*_test.cc)
TEST_PROGS      := $(patsubst test/progs/%.cc,$(BUILD)/test/%,$(wildcard test/progs/*.cc)) \
                   $(BUILD)/test/gc_example \
                   $(patsubst test/shims/%.cc,$(BUILD)/test/lib%.so,$(wildcard test/shims/*.cc))
TEST_RUNTIME_SRCS := $(wildcard test/runtime/*_test.cc)
TEST_GC_SRCS    := $(wildcard test/gc/*_test.cc)
TEST_BINS       := $(BUILD)/test/alloc_tests $(BUILD)/test/bench_tests $(BUILD)/test/runtime_tests \
                   $(BUILD)/test/gc_tests $(BUILD)/test/pool_tests

tests: $(TEST_BINS) $(TEST_PROGS)

$(BUILD)/test/alloc_tests: $(TEST_ALLOC_SRCS) test/alloc/main.cc test/alloc/helpers.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(TESTFLAGS) -o $@ $(TEST_ALLOC_SRCS) test/alloc/main.cc $(BUILD)/lib/libgort.a \
	  -lboost_unit_test_framework -pthread -ldl

$(BUILD)/test/runtime_tests: $(TEST_RUNTIME_SRCS) test/runtime/main.cc $(wildcard test/runtime/*.h) test/watchdog.h \
                             test/alloc/helpers.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(TESTFLAGS) -o $@ $(TEST_RUNTIME_SRCS) test/runtime/main.cc $(BUILD)/lib/libgort.a \
	  -lboost_unit_test_framework -pthread -ldl

$(BUILD)/test/gc_tests: $(TEST_GC_SRCS) test/gc/main.cc test/gc/common.h test/gc/tagged.h test/alloc/helpers.h test/watchdog.h \
                        $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(TESTFLAGS) -o $@ $(TEST_GC_SRCS) test/gc/main.cc $(BUILD)/lib/libgort.a \
	  -lboost_unit_test_framework -pthread -ldl

TEST_POOL_SRCS := $(wildcard test/pool/*_test.cc)
$(BUILD)/test/pool_tests: $(TEST_POOL_SRCS) test/pool/main.cc test/watchdog.h test/alloc/helpers.h include/gort/pool.h include/gort/scope.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(TESTFLAGS) -o $@ $(TEST_POOL_SRCS) test/pool/main.cc $(BUILD)/lib/libgort.a \
	  -lboost_unit_test_framework -pthread -ldl

$(BUILD)/test/bench_tests: test/bench/harness_test.cc test/bench/install_test.cc test/alloc/helpers.h
	@mkdir -p $(dir $@)
	$(CXX) $(TESTFLAGS) -o $@ test/bench/harness_test.cc test/bench/install_test.cc \
	  -lboost_unit_test_framework -pthread

# Helper programs the tests run (some with LD_PRELOAD, some linked to gort).
$(BUILD)/test/%: test/progs/%.cc test/progs/rss_sample.h $(BUILD)/lib/libgort.so
	@mkdir -p $(dir $@)
	$(CXX) $(CXXSTD) -O1 -g $(WARN) -Iinclude -o $@ $< -pthread -ldl

# Scheduler and collector test programs link the runtime statically.
$(BUILD)/test/gc_%: test/progs/gc_%.cc test/gc/tagged.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(CXXSTD) -O1 -g $(WARN) $(SAN) -Iinclude -o $@ $< $(BUILD)/lib/libgort.a -pthread -ldl

# The C example of docs/gc.md.
$(BUILD)/test/gc_example: test/progs/gc_example.c include/gort/gc.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g $(WARN) $(SAN) -Iinclude -o $@ $< $(BUILD)/lib/libgort.a -lstdc++ -pthread -ldl

$(BUILD)/test/sched_%: test/progs/sched_%.cc $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(CXXSTD) -O1 -g $(WARN) $(SAN) -Iinclude -o $@ $< $(BUILD)/lib/libgort.a -pthread -ldl

$(BUILD)/test/lib%.so: test/shims/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXSTD) -O1 -g $(WARN) -shared -fPIC -o $@ $< -ldl

# bench-build: the install test (test/bench/install_test.cc) installs and runs
# the benchmark programs and peers.
test: deps build bench-build
	@echo "== unit, conformance, stress, real programs =="
	GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/alloc_tests --log_level=test_suite --report_level=short
	@echo "== scheduler, with GORT_MAXPROCS=1, 2 and 8 =="
	for n in 1 2 8; do GORT_MAXPROCS=$$n GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/runtime_tests \
	  --log_level=test_suite --report_level=short || exit 1; done
	@echo "== collector, with GORT_MAXPROCS=2 =="
	GORT_MAXPROCS=2 GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/gc_tests --log_level=test_suite --report_level=short
	@echo "== collector torture mode: a cycle every 8 span refills, the tri-colour invariant verified =="
	GORT_DEBUG=gcverify=1,gcstress=8 GORT_MAXPROCS=2 GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/gc_tests \
	  --run_test=torture,concurrent,lifetime,conservative,roots,destructors --report_level=short
	@echo "== pools, with GORT_MAXPROCS=2 =="
	GORT_MAXPROCS=2 GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/pool_tests --log_level=test_suite --report_level=short
	@echo "== benchmark harness and gort tool =="
	GORT_BUILD=$(BUILD) test/run-suite $(BUILD)/test/bench_tests --log_level=test_suite --report_level=short

# The test suites built with UndefinedBehaviorSanitizer, in $(BUILD)-ubsan:
# every finding aborts the test that made it. ASan is not used: it would have
# to replace malloc (gort's own malloc takes its place, so the heap would go
# unchecked), it poisons stack redzones that the collector's conservative stack
# scan must read, and the scheduler switches stacks without ASan's fiber
# annotations. Left out: the fast-path golden test (instrumentation changes
# instruction counts) and the linking tests (they link their own programs
# against the archive). docs/alloc.md "Sanitizers" says what this covers.
UBSAN := -fsanitize=undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined
.PHONY: sanitize
sanitize: deps
	$(MAKE) BUILD=$(BUILD)-ubsan SAN="$(UBSAN)" lib tests
	UBSAN_OPTIONS=print_stacktrace=1 GORT_BUILD=$(BUILD)-ubsan test/run-suite $(BUILD)-ubsan/test/alloc_tests \
	  '--run_test=!fastpath,linking' --report_level=short
	for n in 1 2 8; do UBSAN_OPTIONS=print_stacktrace=1 GORT_MAXPROCS=$$n GORT_BUILD=$(BUILD)-ubsan \
	  test/run-suite $(BUILD)-ubsan/test/runtime_tests --report_level=short || exit 1; done
	UBSAN_OPTIONS=print_stacktrace=1 GORT_MAXPROCS=2 GORT_BUILD=$(BUILD)-ubsan test/run-suite \
	  $(BUILD)-ubsan/test/gc_tests --report_level=short
	UBSAN_OPTIONS=print_stacktrace=1 GORT_MAXPROCS=2 GORT_BUILD=$(BUILD)-ubsan test/run-suite \
	  $(BUILD)-ubsan/test/pool_tests --report_level=short

# Longer runs: more threads, more iterations.
stress: deps build
	GORT_BUILD=$(BUILD) GORT_STRESS_SCALE=20 $(BUILD)/test/alloc_tests --run_test=stress --log_level=test_suite
	for n in 3 4 16 64; do GORT_MAXPROCS=$$n GORT_BUILD=$(BUILD) $(BUILD)/test/runtime_tests \
	  --report_level=short || exit 1; done
	for n in 1 4 16; do GORT_MAXPROCS=$$n GORT_BUILD=$(BUILD) GORT_GC_BOUNDED_SECONDS=10 \
	  $(BUILD)/test/gc_tests --report_level=short || exit 1; done

# ---- benchmarks ----
BENCH_SRCS := $(filter-out bench/workloads/sched_%.cc bench/workloads/gc_%.cc bench/workloads/pool_%.cc,$(wildcard bench/micro/*.cc bench/workloads/*.cc))
BENCH_BINS := $(patsubst bench/%.cc,$(BUILD)/bench/%,$(BENCH_SRCS))

benches: $(BENCH_BINS)

# The switch benchmark calls the runtime's internal switch and Boost.Context's.
$(BUILD)/bench/micro/switch_bench: bench/micro/switch_bench.cc $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -I. -o $@ $< $(BUILD)/lib/libgort.a -lbenchmark -lboost_context -ldl

$(BUILD)/bench/micro/%: bench/micro/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< -lbenchmark

$(BUILD)/bench/workloads/%: bench/workloads/%.cc bench/workloads/workload.h
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $<

# ---- scheduler benchmarks (issue 4): gort vs Go vs Boost.Fiber ----
# bench/workloads/sched_*.cc are gort programs (linked with libgort.a); each has
# a Go peer (bench/peers/go/NAME.go + common.go, standard library only, built
# offline with the Go cache under build/) and a Boost.Fiber peer
# (bench/peers/fiber/NAME.cc). A peer whose toolchain is missing (no `go`, no
# Boost.Fiber headers) is skipped here with a message, and `gort bench`
# reports it as missing. Not part of `build` (so `make test` does not wait for
# the Go compiler); `make run` and `make bench` build them.
SCHED_NAMES := spawn parked yield pingpong skynet sieve
SCHED_BINS  := $(SCHED_NAMES:%=$(BUILD)/bench/workloads/sched_%)
GO_PEERS    := $(SCHED_NAMES:%=$(BUILD)/bench/peers/go/%)
FIBER_PEERS := $(SCHED_NAMES:%=$(BUILD)/bench/peers/fiber/%)
GOENV := GOCACHE=$(abspath $(BUILD))/go/cache GOPATH=$(abspath $(BUILD))/go/path \
         GOTOOLCHAIN=local GOPROXY=off GOFLAGS= GO111MODULE=on GOWORK=off

.PHONY: sched-benches peers
sched-benches: $(SCHED_BINS) peers
peers: $(GO_PEERS) $(FIBER_PEERS)

$(BUILD)/bench/workloads/sched_%: bench/workloads/sched_%.cc bench/workloads/sched_common.h \
                                  bench/workloads/workload.h include/gort/runtime.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< $(BUILD)/lib/libgort.a -ldl

$(BUILD)/bench/peers/go/%: bench/peers/go/%.go bench/peers/go/common.go bench/peers/go/go.mod
	@mkdir -p $(dir $@)
	@if command -v go >/dev/null 2>&1; then \
	  echo "cd bench/peers/go && go build -o $(abspath $@) $*.go common.go"; \
	  cd bench/peers/go && $(GOENV) go build -o $(abspath $@) $*.go common.go; \
	else \
	  echo "peers: no go command: skipping the Go peer $* (make deps installs golang-go)"; \
	fi

$(BUILD)/bench/peers/fiber/%: bench/peers/fiber/%.cc bench/peers/fiber/fiber_common.h bench/workloads/workload.h
	@mkdir -p $(dir $@)
	@if echo '#include <boost/fiber/all.hpp>' | $(CXX) -x c++ -E -o /dev/null - 2>/dev/null; then \
	  echo "$(CXX) $(BENCHFLAGS) -o $@ $< -lboost_fiber -lboost_context"; \
	  $(CXX) $(BENCHFLAGS) -o $@ $< -lboost_fiber -lboost_context; \
	else \
	  echo "peers: no Boost.Fiber headers: skipping the Boost.Fiber peer $* (make deps installs libboost-fiber-dev)"; \
	fi

# ---- collector benchmarks (issue 5): gort vs Go vs Boehm GC ----
# bench/workloads/gc_*.cc are gort programs (libgort.a); each has a Go peer
# (bench/peers/go/NAME.go) and a Boehm GC peer (bench/peers/boehm/NAME.c,
# libgc-dev). A missing toolchain skips its peer with a message.
GC_NAMES       := binarytrees livechurn
GC_BINS        := $(GC_NAMES:%=$(BUILD)/bench/workloads/gc_%)
GC_GO_PEERS    := $(GC_NAMES:%=$(BUILD)/bench/peers/go/%)
GC_BOEHM_PEERS := $(GC_NAMES:%=$(BUILD)/bench/peers/boehm/%)

.PHONY: gc-benches
gc-benches: $(GC_BINS) $(GC_GO_PEERS) $(GC_BOEHM_PEERS)

# The soft memory limit (issue 10): gort and Go only (Boehm GC has no soft
# limit); run by hand, results in bench/results/gc-limit.md.
.PHONY: gc-limit-benches
gc-limit-benches: $(BUILD)/bench/workloads/gc_limit $(BUILD)/bench/peers/go/gclimit

$(BUILD)/bench/workloads/gc_%: bench/workloads/gc_%.cc bench/workloads/gc_common.h include/gort/gc.h \
                               $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< $(BUILD)/lib/libgort.a -ldl

$(BUILD)/bench/peers/boehm/%: bench/peers/boehm/%.c bench/workloads/gc_common.h
	@mkdir -p $(dir $@)
	@if echo '#include <gc.h>' | $(CC) -x c -E -o /dev/null - 2>/dev/null; then \
	  echo "$(CC) -O2 -g -Wall -Wextra -Werror -o $@ $< -lgc -lm"; \
	  $(CC) -O2 -g -Wall -Wextra -Werror -o $@ $< -lgc -lm; \
	else \
	  echo "peers: no Boehm GC headers: skipping the Boehm peer $* (make deps installs libgc-dev)"; \
	fi

# ---- pool benchmarks (issue 13): gort::Pool vs Go's sync.Pool ----
.PHONY: pool-benches
pool-benches: $(BUILD)/bench/workloads/pool_getput $(BUILD)/bench/peers/go/poolgetput \
              $(BUILD)/bench/workloads/pool_request $(BUILD)/bench/peers/go/poolrequest

$(BUILD)/bench/workloads/pool_%: bench/workloads/pool_%.cc bench/workloads/sched_common.h include/gort/pool.h \
                                 $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< $(BUILD)/lib/libgort.a -ldl

# `make run` builds only what the quick comparison runs (the library, the
# tool, the workloads and the peers: not the test suites) and builds it on
# every core, after deps (so that apt-get never races the compilers): from a
# fresh clone it finishes within 3 minutes on 2 cores. The full comparison is
# `make bench`.
NPROC := $(shell nproc 2>/dev/null || echo 2)
.PHONY: bench-build
bench-build: lib $(BUILD)/bin/gort benches sched-benches gc-benches

run: deps
	$(MAKE) --no-print-directory -j$(NPROC) bench-build
	$(BUILD)/bin/gort bench --quick

bench: deps
	$(MAKE) --no-print-directory -j$(NPROC) bench-build
	$(BUILD)/bin/gort bench

# ---- install ----
# Installs the libraries, the headers, gort.pc and a CMake package config
# (find_package(gort): PREFIX/lib/cmake/gort), the gort tool, and what
# `gort bench` runs, so that the installed tool works without this tree:
# the harness and the benchmark programs and peers under
# PREFIX/libexec/gort (with a REVISION file naming the commit).
PREFIX ?= /usr/local
VERSION := 0.1.0
GORT_LIBEXEC = $(DESTDIR)$(PREFIX)/libexec/gort
install: lib $(BUILD)/bin/gort bench-build
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/gort $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/cmake/gort
	install -m 0755 $(BUILD)/bin/gort $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(BUILD)/lib/libgort.so $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 $(BUILD)/lib/libgort.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/gort/*.h $(DESTDIR)$(PREFIX)/include/gort/
	sed 's|@PREFIX@|$(PREFIX)|' tools/gort.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/gort.pc
	sed 's|@VERSION@|$(VERSION)|' tools/gortConfig.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/gort/gortConfig.cmake
	sed 's|@VERSION@|$(VERSION)|' tools/gortConfigVersion.cmake.in \
	  > $(DESTDIR)$(PREFIX)/lib/cmake/gort/gortConfigVersion.cmake
	install -d $(GORT_LIBEXEC)/bench
	install -m 0755 bench/run.py $(GORT_LIBEXEC)/
	(git rev-parse --short HEAD 2>/dev/null || echo unknown) > $(GORT_LIBEXEC)/REVISION
	cd $(BUILD) && find bench -type f -perm -u+x | while read -r f; do \
	  install -D -m 0755 "$$f" "$(abspath $(GORT_LIBEXEC))/$$f" || exit 1; done

format:
	clang-format -i $(FORMAT_FILES)

check-format:
	clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf $(BUILD) $(BUILD)-ubsan

# ---- hardening: libFuzzer over random malloc API sequences (test/fuzz) ----
# clang's libFuzzer with UBSan; not ASan, which would replace gort's malloc.
# FUZZ_SECONDS bounds the run (default 5 minutes); the corpus stays in
# $(BUILD)/fuzz/corpus between runs.
FUZZ_SECONDS ?= 300
.PHONY: fuzz
$(BUILD)/fuzz/malloc_fuzz: test/fuzz/malloc_fuzz.cc $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@) $(BUILD)/fuzz/corpus
	clang++ $(CXXSTD) -O1 -g $(WARN) -Iinclude -I. -fsanitize=fuzzer,undefined \
	  -fno-sanitize-recover=undefined -fsized-deallocation -fno-builtin-malloc -fno-builtin-free \
	  -o $@ $< $(BUILD)/lib/libgort.a -pthread -ldl
fuzz: $(BUILD)/fuzz/malloc_fuzz
	$(BUILD)/fuzz/malloc_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -rss_limit_mb=4096 \
	  -print_final_stats=1 $(BUILD)/fuzz/corpus

# ---- HTTP end-to-end benchmark (issue 12): gort::net, gort + libc, Go net/http ----
# bench/http/http_server.cc (both gort variants), bench/http/http_probe.cc
# (fairness and idle-connection clients), bench/peers/go/httpserver.go, wrk.
# Part of `make bench` (not `make run`): bench/results/http.md.
HTTP_BINS := $(BUILD)/bench/http/http_server $(BUILD)/bench/http/http_probe $(BUILD)/bench/peers/go/httpserver \
             $(BUILD)/bench/http/io_rows $(BUILD)/bench/peers/go/iorows
.PHONY: http-benches http-bench
http-benches: $(HTTP_BINS)

$(BUILD)/bench/http/http_server: bench/http/http_server.cc include/gort/net.h $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< $(BUILD)/lib/libgort.a -ldl

$(BUILD)/bench/http/io_rows: bench/http/io_rows.cc $(BUILD)/lib/libgort.a
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $< $(BUILD)/lib/libgort.a -ldl

$(BUILD)/bench/http/http_probe: bench/http/http_probe.cc
	@mkdir -p $(dir $@)
	$(CXX) $(BENCHFLAGS) -o $@ $<

http-bench: deps http-benches
	python3 bench/http/run_http.py $(BUILD) bench/results/http.md

bench: http-bench

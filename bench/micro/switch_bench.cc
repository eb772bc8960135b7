// Context-switch micro benchmarks: gort's own x86-64 switch
// (runtime/switch.S) against Boost.Context's fcontext, the other choice the
// scheduler had, and a full gort::yield between two tasks on one P.
//
// Each iteration is a round trip: two switches.
#include <benchmark/benchmark.h>
#include <gort/runtime.h>

#include <boost/context/detail/fcontext.hpp>
#include <cstdlib>

#include "runtime/context.h"

namespace {

constexpr size_t kStack = 64 << 10;

struct gort_pair {
  void* main_sp = nullptr;
  void* co_sp = nullptr;
};

void gort_co(void* arg) {
  auto* p = static_cast<gort_pair*>(arg);
  for (;;) gort_ctx_switch(&p->co_sp, p->main_sp);
}

void BM_gort_ctx_switch(benchmark::State& state) {
  void* stack = std::aligned_alloc(64, kStack);
  gort_pair p;
  p.co_sp = gort::rt::ctx_make(static_cast<char*>(stack) + kStack, gort_co, &p);
  for (auto _ : state) gort_ctx_switch(&p.main_sp, p.co_sp);
  state.SetItemsProcessed(state.iterations());
  std::free(stack);
}
BENCHMARK(BM_gort_ctx_switch);

namespace bcd = boost::context::detail;

void fcontext_co(bcd::transfer_t t) {
  for (;;) t = bcd::jump_fcontext(t.fctx, nullptr);
}

void BM_boost_fcontext_switch(benchmark::State& state) {
  void* stack = std::aligned_alloc(64, kStack);
  bcd::fcontext_t co = bcd::make_fcontext(static_cast<char*>(stack) + kStack, kStack, fcontext_co);
  for (auto _ : state) co = bcd::jump_fcontext(co, nullptr).fctx;
  state.SetItemsProcessed(state.iterations());
  std::free(stack);
}
BENCHMARK(BM_boost_fcontext_switch);

// Two tasks yielding to each other on one P: the scheduler's whole path
// (run queue put and get, m::after) around each switch.
void BM_gort_yield_pair(benchmark::State& state) {
  gort::run(
      [&] {
        bool stop = false;
        gort::go([&] {
          while (!stop) gort::yield();
        });
        for (auto _ : state) gort::yield();
        stop = true;
        gort::yield();
      },
      gort::RunOptions{.maxprocs = 1});
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_gort_yield_pair);

}  // namespace

BENCHMARK_MAIN();

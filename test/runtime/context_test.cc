// Context: cancellation trees, timeouts, done() in select, wait/wait_for.
#include <atomic>
#include <boost/test/unit_test.hpp>

#include "common.h"

using namespace rt_test;
using Err = gort::Context::Err;

namespace {
// done() is closed: a receive returns at once with nothing.
bool done_closed(const gort::Context& c) {
  auto d = c.done();
  std::optional<char> v = 1;
  int idx =
      gort::select(gort::on_recv(d, [&](std::optional<char> x) { v = x; }), gort::on_default());
  return idx == 0 && !v.has_value();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(context)

BOOST_AUTO_TEST_CASE(background_is_never_cancelled) {
  run_checked([] {
    auto bg = gort::Context::background();
    TCHECK(!bg.cancelled());
    TCHECK(bg.err() == Err::none);
    bg.cancel();
    TCHECK(!bg.cancelled());
    TCHECK(!bg.wait_for(5ms));
  });
}

BOOST_AUTO_TEST_CASE(cancel_propagates_down_not_up) {
  run_checked([] {
    auto root = gort::Context::with_cancel(gort::Context::background());
    auto a = gort::Context::with_cancel(root);
    auto a1 = gort::Context::with_cancel(a);
    auto a2 = gort::Context::with_timeout(a, 1h);
    auto b = gort::Context::with_cancel(root);
    for (auto* c : {&root, &a, &a1, &a2, &b}) {
      TCHECK(!c->cancelled());
      TCHECK(!done_closed(*c));
    }
    // Cancelling a inner node: its subtree only.
    a.cancel();
    TCHECK(a.cancelled() && a1.cancelled() && a2.cancelled());
    TCHECK(a.err() == Err::cancelled);
    TCHECK(a1.err() == Err::cancelled);
    TCHECK(a2.err() == Err::cancelled);
    TCHECK(done_closed(a) && done_closed(a1) && done_closed(a2));
    TCHECK(!root.cancelled());
    TCHECK(!b.cancelled());
    TCHECK(!done_closed(root) && !done_closed(b));
    a.cancel();  // idempotent
    TCHECK(a.err() == Err::cancelled);
    // The root: everything.
    root.cancel();
    TCHECK(root.cancelled() && b.cancelled());
    TCHECK(b.err() == Err::cancelled);
    TCHECK(done_closed(root) && done_closed(b));
    // A child of a cancelled parent starts cancelled.
    auto late = gort::Context::with_cancel(root);
    TCHECK(late.cancelled());
    TCHECK(late.err() == Err::cancelled);
    TCHECK(done_closed(late));
    TCHECK(late.wait_for(1h));
    late.wait();
  });
}

// A deep and wide tree: one cancel reaches every node, and tasks waiting on
// any of them wake.
BOOST_AUTO_TEST_CASE(cancel_reaches_many_waiters) {
  constexpr int Width = 50, Depth = 5;
  std::atomic<int> woke{0};
  bool all = false;
  run_checked([&] {
    auto root = gort::Context::with_cancel(gort::Context::background());
    gort::WaitGroup wg;
    for (int i = 0; i < Width; i++) {
      gort::Context c = root;
      for (int d = 0; d < Depth; d++) c = gort::Context::with_cancel(c);
      wg.go([&woke, c, i] {
        if (i % 3 == 0)
          c.wait();
        else if (i % 3 == 1)
          c.done().recv();
        else
          c.wait_for(1h);
        if (c.err() == Err::cancelled) woke++;
      });
    }
    gort::sleep_for(10ms);
    TCHECK_EQ(woke.load(), 0);
    root.cancel();
    all = wait_group_within(wg);
  });
  BOOST_TEST(all);
  BOOST_TEST(woke.load() == Width);
}

BOOST_AUTO_TEST_CASE(with_timeout_fires) {
  gort::Duration elapsed{};
  run_checked([&] {
    auto t0 = Clock::now();
    auto c = gort::Context::with_timeout(gort::Context::background(), 20ms);
    auto child = gort::Context::with_cancel(c);
    auto longer = gort::Context::with_timeout(c, 1h);
    TCHECK(!c.cancelled());
    c.wait();
    elapsed = Clock::now() - t0;
    TCHECK(c.err() == Err::deadline_exceeded);
    TCHECK(done_closed(c));
    // Children get the parent's reason.
    TCHECK(child.err() == Err::deadline_exceeded);
    TCHECK(longer.err() == Err::deadline_exceeded);

    // A shorter child timeout: the child expires, the parent does not.
    auto parent = gort::Context::with_timeout(gort::Context::background(), 1h);
    auto shorter = gort::Context::with_timeout(parent, 10ms);
    TCHECK(shorter.wait_for(10s));
    TCHECK(shorter.err() == Err::deadline_exceeded);
    TCHECK(!parent.cancelled());

    // Cancelled before its deadline: stays "cancelled".
    auto early = gort::Context::with_timeout(gort::Context::background(), 10ms);
    early.cancel();
    gort::sleep_for(30ms);
    TCHECK(early.err() == Err::cancelled);
  });
  BOOST_TEST(elapsed >= 20ms);
}

BOOST_AUTO_TEST_CASE(wait_for) {
  run_checked([] {
    auto c = gort::Context::with_cancel(gort::Context::background());
    auto t0 = Clock::now();
    TCHECK(!c.wait_for(15ms));
    TCHECK(Clock::now() - t0 >= 15ms);
    gort::go([c] {
      gort::sleep_for(5ms);
      c.cancel();
    });
    TCHECK(c.wait_for(10s));
    TCHECK(c.cancelled());
  });
}

// Workers select on a work channel and ctx.done(); cancel stops them all.
BOOST_AUTO_TEST_CASE(done_in_select) {
  constexpr int W = 8;
  std::atomic<int> handled{0}, stopped{0};
  bool all = false;
  run_checked([&] {
    auto ctx = gort::Context::with_cancel(gort::Context::background());
    gort::Chan<int> work;
    gort::WaitGroup wg;
    for (int i = 0; i < W; i++) {
      wg.go([&, ctx, work]() mutable {
        auto done = ctx.done();
        for (;;) {
          bool quit = false;
          gort::select(gort::on_recv(work, [&](int, bool) { handled++; }),
                       gort::on_recv(done, [&] { quit = true; }));
          if (quit) break;
        }
        stopped++;
      });
    }
    for (int i = 0; i < 1000; i++) work.send(i);
    ctx.cancel();
    all = wait_group_within(wg);
  });
  BOOST_TEST(all);
  BOOST_TEST(handled.load() == 1000);
  BOOST_TEST(stopped.load() == W);
}

BOOST_AUTO_TEST_SUITE_END()

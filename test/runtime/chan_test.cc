// Channels: buffered and unbuffered semantics, FIFO order of waiting senders
// and receivers, close, element lifetimes, range-for, nil channels.
#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

using namespace rt_test;

namespace {

// Starts n tasks one at a time, each blocked in op(i) before the next
// starts: the task signals just before op(i), and the starter then sleeps
// 10 ms, ample time for the task to get from the signal into op's wait queue.
template <class Op>
void start_in_order(int n, gort::WaitGroup& wg, Op op) {
  gort::Chan<int> started;
  for (int i = 0; i < n; i++) {
    wg.go([started, op, i]() mutable {
      started.send(i);
      op(i);
    });
    started.recv();
    gort::sleep_for(10ms);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(chan)

BOOST_AUTO_TEST_CASE(buffered_fifo_in_one_task) {
  run_checked([] {
    gort::Chan<int> c(8);
    TCHECK_EQ(c.capacity(), 8u);
    TCHECK_EQ(c.size(), 0u);
    for (int i = 0; i < 8; i++) c.send(i);  // never blocks: there is room
    TCHECK_EQ(c.size(), 8u);
    for (int i = 0; i < 8; i++) {
      auto v = c.recv();
      TCHECK(v.has_value());
      if (v) TCHECK_EQ(*v, i);
    }
    TCHECK_EQ(c.size(), 0u);
    // Wrap around the ring many times, 5 to 8 values in it.
    int next_in = 0, next_out = 0;
    for (int k = 0; k < 5; k++) c.send(next_in++);
    for (int round = 0; round < 100; round++) {
      for (int k = 0; k < 3; k++) c.send(next_in++);
      for (int k = 0; k < 3; k++) TCHECK_EQ(*c.recv(), next_out++);
    }
    while (c.size() > 0) TCHECK_EQ(*c.recv(), next_out++);
    TCHECK_EQ(next_out, next_in);
  });
}

// Several producers through a small buffer: every producer's values arrive
// in the order it sent them, none lost.
BOOST_AUTO_TEST_CASE(buffered_fifo_per_sender_across_tasks) {
  constexpr int P = 6, N = 20'000;
  std::vector<int> next(P, 0);
  long received = 0;
  run_checked([&] {
    gort::Chan<std::pair<int, int>> c(16);
    gort::WaitGroup wg;
    for (int p = 0; p < P; p++)
      wg.go([c, p]() mutable {
        for (int i = 0; i < N; i++) c.send({p, i});
      });
    gort::go([&wg, c]() mutable {
      wg.wait();
      c.close();
    });
    for (auto [p, i] : c) {
      TCHECK_MSG(i == next[p], "producer " << p << " sent " << next[p] << ", got " << i);
      next[p] = i + 1;
      received++;
    }
  });
  BOOST_TEST(received == long{P} * N);
  for (int p = 0; p < P; p++) BOOST_TEST(next[p] == N);
}

// An unbuffered send completes only once a receiver has taken the value, and
// the receive is synchronized before the send completes (Go memory model).
BOOST_AUTO_TEST_CASE(unbuffered_rendezvous) {
  run_checked([] {
    gort::Chan<int> c;
    TCHECK_EQ(c.capacity(), 0u);
    std::atomic<bool> sent{false};
    int marker = 0;  // plain: ordered by the channel
    int seen_marker = -1;
    gort::WaitGroup wg;
    wg.go([&] {
      c.send(7);
      sent = true;
      seen_marker = marker;
    });
    gort::sleep_for(20ms);
    TCHECK_MSG(!sent.load(), "an unbuffered send completed with no receiver");
    TCHECK_EQ(c.size(), 0u);
    marker = 42;
    auto v = c.recv();
    TCHECK(v && *v == 7);
    wg.wait();
    TCHECK(sent.load());
    TCHECK_EQ(seen_marker, 42);

    // Receiver first, then sender.
    std::atomic<int> got{0};
    wg.go([&] { got = *c.recv(); });
    gort::sleep_for(5ms);
    c.send(9);
    wg.wait();
    TCHECK_EQ(got.load(), 9);
  });
}

// Many senders and receivers on one unbuffered channel: each value received
// exactly once.
BOOST_AUTO_TEST_CASE(mpmc_each_value_once) {
  constexpr int P = 8, C = 8, N = 5'000;
  for (size_t cap : {size_t{0}, size_t{1}, size_t{64}}) {
    std::vector<std::atomic<uint8_t>> seen(P * N);
    for (auto& s : seen) s = 0;
    std::atomic<long> count{0};
    run_checked([&] {
      gort::Chan<int> c(cap);
      gort::WaitGroup producers, consumers;
      for (int p = 0; p < P; p++)
        producers.go([c, p]() mutable {
          for (int i = 0; i < N; i++) c.send(p * N + i);
        });
      for (int k = 0; k < C; k++)
        consumers.go([&, c]() mutable {
          for (int v : c) {
            seen[v]++;
            count++;
          }
        });
      producers.wait();
      c.close();
      consumers.wait();
    });
    int bad = 0;
    for (auto& s : seen) bad += s.load() != 1;
    BOOST_TEST(bad == 0, "cap " << cap << ": values not received exactly once: " << bad);
    BOOST_TEST(count.load() == long{P} * N);
  }
}

BOOST_AUTO_TEST_CASE(waiting_senders_are_served_fifo) {
  constexpr int N = 6;
  std::vector<int> order, order_buffered;
  run_checked([&] {
    gort::Chan<int> c;  // unbuffered
    gort::WaitGroup wg;
    start_in_order(N, wg, [c](int i) mutable { c.send(i); });
    for (int i = 0; i < N; i++) order.push_back(*c.recv());
    wg.wait();

    // A full buffer: its values first, then the waiting senders' in order.
    gort::Chan<int> b(2);
    b.send(100);
    b.send(101);
    start_in_order(N, wg, [b](int i) mutable { b.send(i); });
    TCHECK_EQ(b.size(), 2u);
    for (int i = 0; i < N + 2; i++) order_buffered.push_back(*b.recv());
    wg.wait();
  });
  BOOST_TEST((order == std::vector<int>{0, 1, 2, 3, 4, 5}));
  BOOST_TEST((order_buffered == std::vector<int>{100, 101, 0, 1, 2, 3, 4, 5}));
}

BOOST_AUTO_TEST_CASE(waiting_receivers_are_served_fifo) {
  constexpr int N = 6;
  std::vector<int> got(N, -1), got_buffered(N, -1);
  run_checked([&] {
    for (size_t cap : {size_t{0}, size_t{4}}) {
      auto& out = cap ? got_buffered : got;
      gort::Chan<int> c(cap);
      gort::WaitGroup wg;
      start_in_order(N, wg, [c, &out](int i) mutable { out[i] = *c.recv(); });
      for (int i = 0; i < N; i++) c.send(100 + i);
      TCHECK(wait_group_within(wg));
    }
  });
  BOOST_TEST((got == std::vector<int>{100, 101, 102, 103, 104, 105}));
  BOOST_TEST((got_buffered == std::vector<int>{100, 101, 102, 103, 104, 105}));
}

BOOST_AUTO_TEST_CASE(close_wakes_every_receiver) {
  constexpr int N = 16;
  std::atomic<int> started{0}, got_nullopt{0}, got_false{0}, select_closed{0};
  bool all_woke = false;
  run_checked([&] {
    gort::Chan<int> u, b(4);
    gort::WaitGroup wg;
    for (int i = 0; i < N; i++) {
      wg.go([&, i] {
        auto& c = i % 2 ? u : b;
        started++;
        if (i % 4 < 2) {
          if (!c.recv()) got_nullopt++;
        } else {
          int x = 5;
          if (!c.recv(x) && x == 5) got_false++;
        }
      });
      wg.go([&] {
        started++;
        gort::select(gort::on_recv(u,
                                   [&](int v, bool ok) {
                                     if (!ok && v == 0) select_closed++;
                                   }),
                     gort::on_recv(b, [&](int v, bool ok) {
                       if (!ok && v == 0) select_closed++;
                     }));
      });
    }
    TCHECK(wait_until([&] { return started.load() == 2 * N; }));
    gort::sleep_for(10ms);
    u.close();
    b.close();
    all_woke = wait_group_within(wg);
  });
  BOOST_TEST(all_woke);
  BOOST_TEST(got_nullopt.load() == N / 2);
  BOOST_TEST(got_false.load() == N / 2);
  BOOST_TEST(select_closed.load() == N);
}

BOOST_AUTO_TEST_CASE(buffered_values_survive_close) {
  run_checked([] {
    gort::Chan<int> c(5);
    c.send(1);
    c.send(2);
    c.send(3);
    c.close();
    TCHECK_EQ(c.size(), 3u);
    for (int i = 1; i <= 3; i++) {
      auto v = c.recv();
      TCHECK(v && *v == i);
    }
    TCHECK(!c.recv().has_value());
    TCHECK(!c.recv().has_value());  // stays closed and empty
    int x = 0;
    TCHECK(!c.recv(x));
    bool ok = true;
    int idx = gort::select(gort::on_recv(c, [&](int, bool k) { ok = k; }));
    TCHECK_EQ(idx, 0);
    TCHECK(!ok);
  });
}

BOOST_AUTO_TEST_CASE(send_on_closed_throws) {
  int caught = 0;
  std::string what;
  run_checked([&] {
    for (size_t cap : {size_t{0}, size_t{4}}) {
      gort::Chan<int> c(cap);
      c.close();
      try {
        c.send(1);
      } catch (const gort::ChanClosed& e) {
        caught++;
        what = e.what();
      }
      TCHECK_EQ(c.size(), 0u);
    }
    // The exception is a std::logic_error too.
    gort::Chan<int> c(1);
    c.close();
    try {
      c.send(1);
    } catch (const std::logic_error&) {
      caught++;
    }
  });
  BOOST_TEST(caught == 3);
  BOOST_TEST(!what.empty());
}

// Senders blocked on a channel when it is closed throw ChanClosed; their
// values never reach the channel, but values already buffered are received.
BOOST_AUTO_TEST_CASE(blocked_senders_throw_on_close) {
  constexpr int N = 8;
  std::atomic<int> started{0}, threw{0}, returned{0};
  std::vector<int> drained;
  bool all_woke = false;
  run_checked([&] {
    gort::Chan<int> u, b(2);
    b.send(-1);
    b.send(-2);
    gort::WaitGroup wg;
    for (int i = 0; i < N; i++) {
      wg.go([&, i] {
        auto& c = i % 2 ? u : b;
        started++;
        try {
          c.send(i);
          returned++;
        } catch (const gort::ChanClosed&) {
          threw++;
        }
      });
    }
    TCHECK(wait_until([&] { return started.load() == N; }));
    gort::sleep_for(10ms);
    u.close();
    b.close();
    all_woke = wait_group_within(wg);
    for (int v : b) drained.push_back(v);
    TCHECK(!u.recv().has_value());
  });
  BOOST_TEST(all_woke);
  BOOST_TEST(threw.load() == N);
  BOOST_TEST(returned.load() == 0);
  BOOST_TEST((drained == std::vector<int>{-1, -2}));
}

BOOST_AUTO_TEST_CASE(close_twice_or_nil_throws) {
  int caught = 0;
  run_checked([&] {
    gort::Chan<int> c(1);
    c.close();
    try {
      c.close();
    } catch (const gort::ChanClosed&) {
      caught++;
    }
    gort::Chan<int> u;
    u.close();
    try {
      u.close();
    } catch (const gort::ChanClosed&) {
      caught++;
    }
    gort::Chan<int> nil(gort::nil);
    try {
      nil.close();
    } catch (const gort::ChanClosed&) {
      caught++;
    }
  });
  BOOST_TEST(caught == 3);
}

BOOST_AUTO_TEST_CASE(range_for) {
  long sum = 0, sum_u = 0;
  int count = 0, in_order = 0, empty_iterations = 0;
  run_checked([&] {
    gort::Chan<int> c(32), u;
    gort::go([c, u]() mutable {
      for (int i = 0; i < 10'000; i++) c.send(i);
      c.close();
      for (int i = 0; i < 1'000; i++) u.send(i);
      u.close();
    });
    int expect = 0;
    for (int v : c) {
      sum += v;
      count++;
      in_order += v == expect++;
    }
    for (int v : u) sum_u += v;
    gort::Chan<int> closed(3);
    closed.close();
    for (int v : closed) {
      (void)v;
      empty_iterations++;
    }
  });
  BOOST_TEST(count == 10'000);
  BOOST_TEST(in_order == 10'000);
  BOOST_TEST(sum == 10'000L * 9'999 / 2);
  BOOST_TEST(sum_u == 1'000L * 999 / 2);
  BOOST_TEST(empty_iterations == 0);
}

BOOST_AUTO_TEST_CASE(move_only_elements) {
  long sum = 0;
  int nulls = 0;
  run_checked([&] {
    for (size_t cap : {size_t{0}, size_t{3}}) {
      gort::Chan<std::unique_ptr<int>> c(cap);
      gort::go([c]() mutable {
        for (int i = 0; i < 1000; i++) c.send(std::make_unique<int>(i));
        c.close();
      });
      for (auto& p : c) {
        if (!p)
          nulls++;
        else
          sum += *p;
      }
    }
    // recv(T&), select receive and send cases with a move-only type.
    gort::Chan<std::unique_ptr<int>> c(2);
    c.send(std::make_unique<int>(5));
    std::unique_ptr<int> out;
    TCHECK(c.recv(out) && out && *out == 5);
    int idx = gort::select(gort::on_send(c, std::make_unique<int>(6)));
    TCHECK_EQ(idx, 0);
    int got = 0;
    gort::select(gort::on_recv(c, [&](std::unique_ptr<int> p, bool ok) {
      if (ok && p) got = *p;
    }));
    TCHECK_EQ(got, 6);
  });
  BOOST_TEST(nulls == 0);
  BOOST_TEST(sum == 2 * 1000L * 999 / 2);
}

// Every element constructed is destroyed exactly once, whatever path it
// takes: buffered, unbuffered, select, recv(T&), a send that throws, and
// values still buffered when the last handle goes away.
BOOST_AUTO_TEST_CASE(element_lifetimes_are_balanced) {
  Counted::reset();
  long sum = 0;
  run_checked([&] {
    {
      gort::Chan<Counted> b(8), u;
      gort::WaitGroup wg;
      wg.go([b, u]() mutable {
        for (int i = 0; i < 1000; i++) {
          b.send(Counted(i));
          u.send(Counted(i));
        }
      });
      for (int i = 0; i < 1000; i++) {
        auto v = b.recv();
        sum += v->value;
        Counted x;
        u.recv(x);
        sum += x.value;
      }
      wg.wait();

      // select, both directions.
      for (int i = 0; i < 100; i++) {
        gort::select(gort::on_send(b, Counted(i)));
        gort::select(gort::on_recv(b, [&](Counted c, bool ok) {
          if (ok) sum += c.value;
        }));
        gort::select(gort::on_send(b, Counted(1)), gort::on_default());
        gort::select(
            gort::on_recv(b, [&](std::optional<Counted> c) { TCHECK(c && c->value == 1); }),
            gort::on_default());
      }
      // Unbuffered select against a sending task.
      wg.go([u]() mutable {
        for (int i = 0; i < 100; i++) u.send(Counted(i));
      });
      for (int i = 0; i < 100; i++)
        gort::select(gort::on_recv(u, [&](Counted c, bool) { sum += c.value; }),
                     gort::on_recv(b, [&](Counted c, bool) { sum += 1'000'000 + c.value; }));
      wg.wait();

      // Sending on a closed channel: the value is destroyed once, by the sender.
      gort::Chan<Counted> closed(4);
      closed.close();
      try {
        closed.send(Counted(5));
      } catch (const gort::ChanClosed&) {
      }
      try {
        gort::select(gort::on_send(closed, Counted(6)));
      } catch (const gort::ChanClosed&) {
      }
      gort::select(gort::on_recv(closed, [](Counted, bool) {}));

      // Values left in a buffer: destroyed with the channel, which a copy of
      // the handle keeps alive after the original goes.
      gort::Chan<Counted> left(16);
      for (int i = 0; i < 10; i++) left.send(Counted(i));
      {
        gort::Chan<Counted> copy = left;
        left = gort::Chan<Counted>(gort::nil);
        TCHECK_EQ(copy.size(), 10u);
        TCHECK(Counted::live.load() >= 10);
      }
      // Left in a closed channel, too.
      gort::Chan<Counted> left_closed(4);
      left_closed.send(Counted(1));
      left_closed.close();
    }
  });
  BOOST_TEST(sum == 2 * 1000L * 999 / 2 + 100L * 99 / 2 + 100L * 99 / 2);
  BOOST_TEST(Counted::live.load() == 0, "constructed " << Counted::constructed.load()
                                                       << ", destroyed "
                                                       << Counted::destroyed.load());
  BOOST_TEST(Counted::bad.load() == 0, "destroyed twice or used after destruction");
}

// Same with unique_ptr<Counted>: buffered values freed with the channel.
BOOST_AUTO_TEST_CASE(move_only_left_in_buffer_is_freed) {
  Counted::reset();
  run_checked([] {
    gort::Chan<std::unique_ptr<Counted>> c(8);
    for (int i = 0; i < 5; i++) c.send(std::make_unique<Counted>(i));
    TCHECK_EQ(Counted::live.load(), 5);
  });
  BOOST_TEST(Counted::live.load() == 0);
  BOOST_TEST(Counted::bad.load() == 0);
}

BOOST_AUTO_TEST_CASE(nil_channel) {
  int defaults = 0, ready_chosen = 0;
  bool progressed = true;
  run_checked([&] {
    gort::Chan<int> nil(gort::nil);
    TCHECK(nil.is_nil());
    TCHECK_EQ(nil.size(), 0u);
    TCHECK_EQ(nil.capacity(), 0u);
    gort::Chan<int> copy = nil;
    TCHECK(copy.is_nil());
    gort::Chan<int> ready(1);
    for (int i = 0; i < 1000; i++) {
      int idx = gort::select(gort::on_recv(nil), gort::on_send(nil, 1), gort::on_default());
      defaults += idx == 2;
      ready.send(i);
      idx = gort::select(gort::on_recv(nil), gort::on_send(copy, 2), gort::on_recv(ready));
      ready_chosen += idx == 2;
    }
    // A task blocked on a nil channel never proceeds (it is abandoned when
    // the run ends).
    std::atomic<bool> moved{false};
    gort::go([&moved, nil]() mutable {
      nil.recv();
      moved = true;
    });
    gort::sleep_for(20ms);
    progressed = moved.load();
  });
  BOOST_TEST(defaults == 1000);
  BOOST_TEST(ready_chosen == 1000);
  BOOST_TEST(!progressed);
}

BOOST_AUTO_TEST_SUITE_END()

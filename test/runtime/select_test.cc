// select: default, blocking over many channels, fairness, send cases, closed
// channels, many tasks selecting on the same channels.
#include <array>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <optional>
#include <vector>

#include "common.h"

using namespace rt_test;

BOOST_AUTO_TEST_SUITE(select_suite)

BOOST_AUTO_TEST_CASE(default_when_nothing_ready) {
  run_checked([] {
    gort::Chan<int> u, b(2), full(1);
    full.send(1);
    bool ran_default = false, ran_other = false;
    int idx = gort::select(gort::on_recv(u, [&] { ran_other = true; }),
                           gort::on_recv(b, [&] { ran_other = true; }),
                           gort::on_send(full, 2, [&] { ran_other = true; }),
                           gort::on_send(u, 3, [&] { ran_other = true; }),
                           gort::on_default([&] { ran_default = true; }));
    TCHECK_EQ(idx, 4);
    TCHECK(ran_default);
    TCHECK(!ran_other);
    TCHECK_EQ(full.size(), 1u);
    // The default case's index is its position among the arguments.
    TCHECK_EQ(gort::select(gort::on_default(), gort::on_recv(u)), 0);
    TCHECK_EQ(gort::select(gort::on_recv(u), gort::on_default(), gort::on_recv(b)), 1);
    TCHECK_EQ(gort::select(gort::on_default()), 0);
    // With a case ready, default is never taken.
    int defaults = 0;
    for (int i = 0; i < 1000; i++) {
      b.send(i);
      defaults += gort::select(gort::on_recv(u), gort::on_recv(b), gort::on_default()) == 2;
    }
    TCHECK_EQ(defaults, 0);
  });
}

// A blocking select over 8 channels is woken by a send on any one of them,
// gets that value, and leaves nothing behind on the other channels.
BOOST_AUTO_TEST_CASE(blocking_select_over_many_channels) {
  run_checked([] {
    std::array<gort::Chan<int>, 8> ch;
    for (int k = 0; k < 8; k++) {
      int got_idx = -1, got_v = -1;
      bool got_ok = false;
      auto h = [&](int j) {
        return [&, j](int v, bool ok) {
          got_idx = j;
          got_v = v;
          got_ok = ok;
        };
      };
      gort::go([c = ch[k], k]() mutable {
        gort::sleep_for(2ms);
        c.send(k * 10);
      });
      int idx = gort::select(gort::on_recv(ch[0], h(0)), gort::on_recv(ch[1], h(1)),
                             gort::on_recv(ch[2], h(2)), gort::on_recv(ch[3], h(3)),
                             gort::on_recv(ch[4], h(4)), gort::on_recv(ch[5], h(5)),
                             gort::on_recv(ch[6], h(6)), gort::on_recv(ch[7], h(7)));
      TCHECK_EQ(idx, k);
      TCHECK_EQ(got_idx, k);
      TCHECK_EQ(got_v, k * 10);
      TCHECK(got_ok);
    }
    // The select is no longer waiting on the other channels: a send on each
    // of them reaches a plain receive.
    for (int k = 0; k < 8; k++) {
      gort::go([c = ch[k], k]() mutable { c.send(100 + k); });
      bool timed_out = false;
      auto v = recv_within(ch[k], kHang, &timed_out);
      TCHECK(!timed_out);
      TCHECK(v && *v == 100 + k);
    }
  });
}

// Recv and send cases mixed, all blocking; a task completes one of the sends.
BOOST_AUTO_TEST_CASE(blocking_select_send_case) {
  run_checked([] {
    gort::Chan<int> r1, r2, s1, s2;
    for (int round = 0; round < 50; round++) {
      bool handler = false;
      auto& target = round % 2 ? s2 : s1;
      int got = -1;
      gort::WaitGroup wg;
      wg.go([&] {
        gort::sleep_for(1ms);
        got = *target.recv();
      });
      int idx =
          gort::select(gort::on_recv(r1), gort::on_send(s1, 10 + round, [&] { handler = true; }),
                       gort::on_recv(r2), gort::on_send(s2, 20 + round, [&] { handler = true; }));
      wg.wait();
      TCHECK_EQ(idx, round % 2 ? 3 : 1);
      TCHECK(handler);
      TCHECK_EQ(got, (round % 2 ? 20 : 10) + round);
    }
  });
}

BOOST_AUTO_TEST_CASE(send_case_ready_and_closed) {
  int caught = 0;
  run_checked([&] {
    gort::Chan<int> c(1);
    bool ran = false;
    TCHECK_EQ(gort::select(gort::on_send(c, 5, [&] { ran = true; })), 0);
    TCHECK(ran);
    TCHECK_EQ(c.size(), 1u);
    TCHECK_EQ(*c.recv(), 5);
    // A send case on a closed channel throws, as a send does, default or not.
    gort::Chan<int> closed(1);
    closed.close();
    try {
      gort::select(gort::on_send(closed, 1));
    } catch (const gort::ChanClosed&) {
      caught++;
    }
    try {
      gort::select(gort::on_send(closed, 1), gort::on_default());
    } catch (const gort::ChanClosed&) {
      caught++;
    }
    // A select blocked on a send case throws when the channel is closed.
    gort::Chan<int> u, never;
    gort::go([u]() mutable {
      gort::sleep_for(5ms);
      u.close();
    });
    try {
      gort::select(gort::on_send(u, 1), gort::on_recv(never));
    } catch (const gort::ChanClosed&) {
      caught++;
    }
  });
  BOOST_TEST(caught == 3);
}

BOOST_AUTO_TEST_CASE(recv_case_on_closed_channel) {
  run_checked([] {
    gort::Chan<int> c(3);
    c.send(1);
    c.send(2);
    c.close();
    // Buffered values first, with ok = true.
    for (int i = 1; i <= 2; i++) {
      int v = -1;
      bool ok = false;
      gort::select(gort::on_recv(c, [&](int x, bool k) {
        v = x;
        ok = k;
      }));
      TCHECK(ok);
      TCHECK_EQ(v, i);
    }
    // Then ok = false with a default-constructed value, at once, every time.
    for (int i = 0; i < 3; i++) {
      int v = -1;
      bool ok = true;
      int idx = gort::select(gort::on_recv(c,
                                           [&](int x, bool k) {
                                             v = x;
                                             ok = k;
                                           }),
                             gort::on_default());
      TCHECK_EQ(idx, 0);
      TCHECK(!ok);
      TCHECK_EQ(v, 0);
    }
    std::optional<int> o = 7;
    gort::select(gort::on_recv(c, [&](std::optional<int> x) { o = x; }));
    TCHECK(!o.has_value());
    bool ran = false;
    gort::select(gort::on_recv(c, [&] { ran = true; }));
    TCHECK(ran);

    // A select blocked in receive is woken by the close.
    gort::Chan<int> u, never;
    gort::go([u]() mutable {
      gort::sleep_for(5ms);
      u.close();
    });
    bool ok = true;
    int idx = gort::select(gort::on_recv(never), gort::on_recv(u, [&](int, bool k) { ok = k; }));
    TCHECK_EQ(idx, 1);
    TCHECK(!ok);
  });
}

// Two (then three) always-ready cases, 10,000 selects: each is chosen with
// equal probability. Bounds are > 15 standard deviations wide.
BOOST_AUTO_TEST_CASE(fairness) {
  constexpr int N = 10'000;
  int two[2] = {0, 0}, three[3] = {0, 0, 0}, sends[2] = {0, 0}, same[2] = {0, 0};
  int defaults = 0;
  run_checked([&] {
    gort::Chan<int> a(1), b(1), c(1);
    a.send(0);
    b.send(0);
    c.send(0);
    for (int i = 0; i < N; i++) {
      int idx = gort::select(gort::on_recv(a), gort::on_recv(b), gort::on_default());
      if (idx == 2) {
        defaults++;
        continue;
      }
      two[idx]++;
      (idx ? b : a).send(0);
    }
    for (int i = 0; i < N; i++) {
      int idx = gort::select(gort::on_recv(a), gort::on_recv(b), gort::on_recv(c));
      three[idx]++;
      (idx == 0 ? a : idx == 1 ? b : c).send(0);
    }
    gort::Chan<int> s1(1), s2(1);
    for (int i = 0; i < N; i++) {
      int idx = gort::select(gort::on_send(s1, 1), gort::on_send(s2, 2));
      sends[idx]++;
      (idx ? s2 : s1).recv();
    }
    for (int i = 0; i < N; i++) {
      int idx = gort::select(gort::on_recv(a), gort::on_recv(a));
      same[idx]++;
      a.send(0);
    }
  });
  BOOST_TEST_MESSAGE("two: " << two[0] << "/" << two[1] << ", three: " << three[0] << "/"
                             << three[1] << "/" << three[2] << ", sends: " << sends[0] << "/"
                             << sends[1] << ", same channel: " << same[0] << "/" << same[1]);
  BOOST_TEST(defaults == 0);
  for (int k = 0; k < 2; k++) {
    BOOST_TEST(two[k] >= 4000);
    BOOST_TEST(two[k] <= 6000);
    BOOST_TEST(sends[k] >= 4000);
    BOOST_TEST(sends[k] <= 6000);
    BOOST_TEST(same[k] >= 4000);
    BOOST_TEST(same[k] <= 6000);
  }
  for (int k = 0; k < 3; k++) {
    BOOST_TEST(three[k] >= 2500);
    BOOST_TEST(three[k] <= 4200);
  }
}

// Producers select-send on two channels, consumers select-receive on both
// (dropping each channel, Go's nil idiom, once it is closed): every value
// arrives exactly once.
BOOST_AUTO_TEST_CASE(many_tasks_selecting_lose_nothing) {
  constexpr int P = 6, C = 6, N = 4'000;
  for (size_t cap : {size_t{0}, size_t{8}}) {
    std::vector<std::atomic<uint8_t>> seen(P * N);
    for (auto& s : seen) s = 0;
    std::atomic<long> sum{0};
    run_checked([&] {
      gort::Chan<int> a(cap), b(cap);
      gort::WaitGroup producers, consumers;
      for (int p = 0; p < P; p++) {
        producers.go([a, b, p]() mutable {
          for (int i = 0; i < N; i++)
            gort::select(gort::on_send(a, p * N + i), gort::on_send(b, p * N + i));
        });
      }
      for (int k = 0; k < C; k++) {
        consumers.go([&, a, b, k]() mutable {
          auto take = [&](int v) {
            seen[v]++;
            sum += v;
          };
          if (k == 0) {  // one plain receiver on a, to mix the two kinds of waiter
            for (int v : a) take(v);
            a = gort::nil;
          }
          while (!a.is_nil() || !b.is_nil()) {
            gort::select(gort::on_recv(a,
                                       [&](int v, bool ok) {
                                         if (ok)
                                           take(v);
                                         else
                                           a = gort::nil;
                                       }),
                         gort::on_recv(b, [&](int v, bool ok) {
                           if (ok)
                             take(v);
                           else
                             b = gort::nil;
                         }));
          }
        });
      }
      producers.wait();
      a.close();
      b.close();
      TCHECK(wait_group_within(consumers));
    });
    int bad = 0;
    for (auto& s : seen) bad += s.load() != 1;
    BOOST_TEST(bad == 0, "cap " << cap << ": values not received exactly once: " << bad);
    BOOST_TEST(sum.load() == long{P} * N * (long{P} * N - 1) / 2);
  }
}

// A select sending and a select receiving meet on an unbuffered channel.
BOOST_AUTO_TEST_CASE(select_meets_select) {
  constexpr int N = 5'000;
  long sum = 0;
  run_checked([&] {
    gort::Chan<int> u, never1, never2;
    gort::WaitGroup wg;
    wg.go([&] {
      for (int i = 0; i < N; i++) gort::select(gort::on_recv(never1), gort::on_send(u, i));
    });
    for (int i = 0; i < N; i++)
      gort::select(gort::on_recv(u, [&](int v, bool ok) { sum += ok ? v : -1'000'000; }),
                   gort::on_recv(never2));
    wg.wait();
  });
  BOOST_TEST(sum == long{N} * (N - 1) / 2);
}

BOOST_AUTO_TEST_SUITE_END()

// Timers, sleep, gort::Timer, after and AfterFunc; see timer.h.
#include <sched.h>
#include <time.h>

#include "gc/roots.h"
#include "gort/runtime.h"
#include "runtime/proc.h"
#include "runtime/timer.h"

namespace gort::rt {

namespace {

// The heap is 4-ary: shallower than binary, and siftdown's four children
// share a cache line.
void siftup(timer** h, uint32_t i) {
  timer* t = h[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 4;
    if (h[parent]->when <= t->when) break;
    h[i] = h[parent];
    h[i]->idx = static_cast<int32_t>(i);
    i = parent;
  }
  h[i] = t;
  t->idx = static_cast<int32_t>(i);
}

void siftdown(timer** h, uint32_t n, uint32_t i) {
  timer* t = h[i];
  for (;;) {
    uint32_t c = 4 * i + 1;
    if (c >= n) break;
    uint32_t best = c;
    for (uint32_t k = c + 1; k < c + 4 && k < n; k++)
      if (h[k]->when < h[best]->when) best = k;
    if (h[best]->when >= t->when) break;
    h[i] = h[best];
    h[i]->idx = static_cast<int32_t>(i);
    i = best;
  }
  h[i] = t;
  t->idx = static_cast<int32_t>(i);
}

void update_timer0(p* pp) {
  pp->timer0.store(pp->ntimers ? pp->timers[0]->when : 0, std::memory_order_seq_cst);
}

// Removes h[i]; pp->timers_lock held.
void remove_at(p* pp, uint32_t i) {
  timer** h = pp->timers;
  timer* t = h[i];
  uint32_t last = --pp->ntimers;
  if (i != last) {
    h[i] = h[last];
    h[i]->idx = static_cast<int32_t>(i);
    siftdown(h, last, i);
    siftup(h, static_cast<uint32_t>(h[i]->idx));
  }
  t->idx = -1;
  t->pp.store(nullptr, std::memory_order_release);
}

}  // namespace

void timer_add(timer* t, int64_t when) {
  m* mp = getm();
  p* pp = mp && mp->pp ? mp->pp : nullptr;
  if (!pp) {
    if (!sched.running.load(std::memory_order_acquire) || !allp)
      alloc::fatal("timers need a gort::run in progress");
    pp = allp[0];
  }
  pp->timers_lock.lock();
  if (pp->ntimers == pp->timers_cap) {
    uint32_t cap = pp->timers_cap ? pp->timers_cap * 2 : 64;
    timer** nh = static_cast<timer**>(::operator new(sizeof(timer*) * cap));
    for (uint32_t i = 0; i < pp->ntimers; i++) nh[i] = pp->timers[i];
    ::operator delete(pp->timers);
    pp->timers = nh;
    pp->timers_cap = cap;
  }
  t->when = when;
  t->firing.store(0, std::memory_order_relaxed);
  t->pp.store(pp, std::memory_order_relaxed);
  pp->timers[pp->ntimers] = t;
  siftup(pp->timers, pp->ntimers++);
  bool earliest = t->idx == 0;
  if (earliest) update_timer0(pp);
  pp->timers_lock.unlock();
  if (earliest) wake_timer_sleeper(when);
}

bool timer_del(timer* t) {
  for (;;) {
    p* pp = t->pp.load(std::memory_order_acquire);
    if (!pp) return false;
    pp->timers_lock.lock();
    if (t->pp.load(std::memory_order_relaxed) != pp) {
      pp->timers_lock.unlock();
      continue;
    }
    bool first = t->idx == 0;
    remove_at(pp, static_cast<uint32_t>(t->idx));
    if (first) update_timer0(pp);
    pp->timers_lock.unlock();
    return true;
  }
}

void timer_wait_fired(timer* t) {
  while (t->firing.load(std::memory_order_acquire)) sched_yield();
}

int64_t timers_run(p* pp, int64_t now) {
  pp->timers_lock.lock();
  while (pp->ntimers > 0 && pp->timers[0]->when <= now) {
    timer* t = pp->timers[0];
    // firing before pp is cleared: whoever sees pp == null (timer_del)
    // must see firing and wait for the callback.
    t->firing.store(1, std::memory_order_relaxed);
    remove_at(pp, 0);
    update_timer0(pp);
    pp->timers_lock.unlock();
    t->f(t, now);  // t may be gone once f returns
    pp->timers_lock.lock();
  }
  int64_t next = pp->ntimers ? pp->timers[0]->when : 0;
  pp->timers_lock.unlock();
  return next;
}

int64_t timers_earliest(bool idle_only) {
  int64_t best = 0;
  int32_t n = gomaxprocs.load(std::memory_order_relaxed);
  for (int32_t i = 0; i < n; i++) {
    if (idle_only && allp[i]->mp.load(std::memory_order_relaxed))
      continue;  // a busy P runs its own timers
    int64_t w = allp[i]->timer0.load(std::memory_order_seq_cst);
    if (w != 0 && (best == 0 || w < best)) best = w;
  }
  return best;
}

void timers_clear(p* pp) {
  alloc::lock_guard l(pp->timers_lock);
  for (uint32_t i = 0; i < pp->ntimers; i++) {
    pp->timers[i]->idx = -1;
    pp->timers[i]->pp.store(nullptr, std::memory_order_relaxed);
  }
  pp->ntimers = 0;
  pp->timer0.store(0);
}

namespace {

void sleep_fire(timer* t, int64_t) {
  ready(static_cast<g*>(t->arg));
}

void sleep_arm(void* arg, g*) {
  timer* t = static_cast<timer*>(arg);
  timer_add(t, t->when);
}

void sleep_ns(int64_t until) {
  m* mp = getm();
  if (!mp || !mp->curg) {  // a thread outside the scheduler just sleeps
    for (int64_t left; (left = until - now_ns()) > 0;) {
      struct timespec ts = {static_cast<time_t>(left / 1000000000),
                            static_cast<long>(left % 1000000000)};
      nanosleep(&ts, nullptr);
    }
    return;
  }
  if (until <= now_ns()) return;
  timer t;
  t.when = until;
  t.f = sleep_fire;
  t.arg = mp->curg;
  // Armed once the task is parked: firing earlier would ready a running task.
  gopark(sleep_arm, &t, "sleep");
}

int64_t deadline(Duration d) {
  int64_t now = now_ns();
  int64_t ns = d.count();
  if (ns <= 0) return now;
  return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

Clock::time_point to_time_point(int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

// Timer and after: send the time on a 1-slot channel without blocking.
void chan_fire(timer* t, int64_t now) {
  Clock::time_point tp = to_time_point(now);
  detail::scase c{static_cast<detail::hchan*>(t->arg), &tp, true};
  bool ok;
  detail::select_go(&c, 1, false, &ok);
  t->firing.store(0, std::memory_order_release);
}

void drain(detail::hchan* c) {
  alignas(Clock::time_point) unsigned char buf[sizeof(Clock::time_point)];
  detail::scase sc{c, buf, false};
  bool ok;
  detail::select_go(&sc, 1, false, &ok);
}

// The callback is a root of the collector while the record lives (a
// closure node: std::function may keep its captures in a block of its own).
struct after_func {
  timer t;
  std::function<void()> f;
  gc::rootNode root;
};

void func_fire(timer* t, int64_t) {
  auto* af = static_cast<after_func*>(t->arg);
  std::function<void()> f = af->f;
  gort::go([f] { f(); });
  t->firing.store(0, std::memory_order_release);
}

}  // namespace

}  // namespace gort::rt

namespace gort {

using namespace gort::rt;

void sleep_for(Duration d) {
  if (d.count() <= 0) return;
  sleep_ns(deadline(d));
}

void sleep_until(Clock::time_point t) {
  int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  sleep_ns(ns);
}

Timer::Timer(Duration d) : ch_(1), t_(new timer) {
  t_->f = chan_fire;
  t_->arg = ch_.raw();
  timer_add(t_, deadline(d));
}

Timer::~Timer() {
  timer_del(t_);
  timer_wait_fired(t_);
  delete t_;
}

bool Timer::stop() {
  bool was = timer_del(t_);
  if (!was) timer_wait_fired(t_);
  return was;
}

bool Timer::reset(Duration d) {
  bool was = stop();
  drain(ch_.raw());
  timer_add(t_, deadline(d));
  return was;
}

Chan<Clock::time_point> after(Duration d) {
  // The timer frees itself after firing; it holds a reference to the channel.
  struct after_timer {
    timer t;
    Chan<Clock::time_point> ch{1};
  };
  auto* at = new after_timer;
  at->t.arg = at;
  at->t.f = [](timer* t, int64_t now) {
    auto* self = static_cast<after_timer*>(t->arg);
    t->arg = self->ch.raw();
    chan_fire(t, now);
    delete self;
  };
  Chan<Clock::time_point> ch = at->ch;
  timer_add(&at->t, deadline(d));
  return ch;
}

AfterFunc::AfterFunc(Duration d, std::function<void()> f) {
  auto* af = new after_func{{}, std::move(f), {}};
  af->root.closure = true;
  gc::add_root_node(&af->root, &af->f, sizeof af->f);
  af->t.f = func_fire;
  af->t.arg = af;
  t_ = &af->t;
  timer_add(t_, deadline(d));
}

AfterFunc::~AfterFunc() {
  // As in Go, dropping the handle does not stop the timer: a pending one
  // still fires, and its record (a few dozen bytes) is then never freed; a
  // fired or stopped one is freed here.
  if (!t_->pp.load(std::memory_order_acquire)) {
    timer_wait_fired(t_);
    auto* af = static_cast<after_func*>(t_->arg);
    gc::remove_root_node(&af->root);
    delete af;
  }
}

bool AfterFunc::stop() {
  bool was = timer_del(t_);
  if (!was) timer_wait_fired(t_);
  return was;
}

bool AfterFunc::reset(Duration d) {
  bool was = stop();
  timer_add(t_, deadline(d));
  return was;
}

}  // namespace gort

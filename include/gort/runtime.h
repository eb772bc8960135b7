// gort/runtime.h: the M:N task scheduler (C++ API). See docs/runtime.md.
//
// gort::run starts GORT_MAXPROCS Ps (logical processors), runs a function as
// the main task, and returns when it returns. Inside, gort::go spawns tasks
// (stackful, like goroutines) that run on a few OS threads (Ms); channels,
// select, timers and the sync types park a task, never its thread.
//
//   #include <gort/runtime.h>
//   int main() {
//     return gort::run([] {
//       gort::Chan<int> results(16);
//       gort::WaitGroup wg;
//       for (int i = 0; i < 1000; i++) {
//         wg.add(1);
//         gort::go([&, i] { results.send(i * i); wg.done(); });
//       }
//       gort::go([&] { wg.wait(); results.close(); });
//       long sum = 0;
//       for (int v : results) sum += v;
//     });
//   }
//
// Blocking operations (Chan, select, Mutex, RWMutex, WaitGroup, Cond,
// sleep_for, Context::wait) also work from plain OS threads outside the
// scheduler: there they block the thread on a futex.
//
// Errors follow Go's panics: sending on or closing a closed channel throws
// gort::ChanClosed; an exception that escapes a task ends the program with
// the task's id and the message (exit code 2); when every task is blocked and
// no timer is pending, the runtime prints "all tasks are asleep - deadlock!"
// with the blocked tasks and exits with code 2.
#ifndef GORT_RUNTIME_H
#define GORT_RUNTIME_H

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

// The C form of gort::blocking, for code between which a task may block
// unseen: nests; does nothing on a thread that runs no task.
extern "C" void gort_blocking_enter(void);
extern "C" void gort_blocking_exit(void);

namespace gort {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

struct RunOptions {
  int maxprocs = 0;       // 0: GORT_MAXPROCS, else the CPUs this process may use
  size_t stack_size = 0;  // bytes per task stack; 0: GORT_STACKSIZE, else 256 KiB
};

// ---------------------------------------------------------------- internals
namespace rt {
struct g;
struct timer;
}  // namespace rt
namespace detail {
using rt::g;
using rt::timer;
struct hchan;

// A task's body, stored right after its g (one allocation).
struct closure {
  void (*invoke)(void* self);
  void (*destroy)(void* self);
};
g* task_alloc(size_t closure_size, size_t closure_align, void** storage);
void task_start(g* gp);  // makes it runnable (runnext of this P)
int run_main(g* main_task, const RunOptions& opts);

template <class F>
g* make_task(F&& f) {
  using Fn = std::decay_t<F>;
  struct box {
    closure c;
    Fn fn;
  };
  void* storage;
  g* gp = task_alloc(sizeof(box), alignof(box), &storage);
  box* b = new (storage) box{{[](void* self) { static_cast<box*>(self)->fn(); },
                              [](void* self) { static_cast<box*>(self)->~box(); }},
                             Fn(std::forward<F>(f))};
  (void)b;
  return gp;
}

// How a channel moves its element type (one per T).
struct elemtype {
  size_t size;
  size_t align;
  void (*move_construct)(void* dst, void* src);  // construct *dst from std::move(*src)
  void (*destroy)(void* p);
};
template <class T>
inline const elemtype* elemtype_of() {
  static const elemtype t{sizeof(T), alignof(T),
                          [](void* d, void* s) { new (d) T(std::move(*static_cast<T*>(s))); },
                          [](void* p) { static_cast<T*>(p)->~T(); }};
  return &t;
}

hchan* chan_make(const elemtype* et, size_t cap);
void chan_retain(hchan* c);
void chan_release(hchan* c);
// chan_send moves from *elem (its owner destroys it); throws ChanClosed.
void chan_send(hchan* c, void* elem);
// chan_recv move-constructs into *elem (raw storage); false if closed and empty.
bool chan_recv(hchan* c, void* elem);
void chan_close(hchan* c);
size_t chan_len(hchan* c);
size_t chan_cap(hchan* c);

// One case of a select. elem: the value to send (moved from when chosen), or
// raw storage the received value is constructed in.
struct scase {
  hchan* c;
  void* elem;
  bool is_send;
};
// Returns the index of the chosen case, or -1 (only when !block: no case was
// ready). *recv_ok: a receive case got a value (false: the channel is closed).
int select_go(scase* cases, int n, bool block, bool* recv_ok);

[[noreturn]] void throw_chan_closed(const char* what);
}  // namespace detail

// ---------------------------------------------------------------- tasks

// Runs f as the main task on GORT_MAXPROCS Ps and returns when it returns:
// 0, or what f returns if it returns an int. Other tasks still alive then are
// abandoned (as Go's exit does): they never run again. One run at a time.
template <class F>
int run(F&& f, RunOptions opts = {}) {
  int code = 0;
  detail::g* gp;
  if constexpr (std::is_convertible_v<std::invoke_result_t<F&>, int>) {
    gp = detail::make_task([&code, &f] { code = static_cast<int>(f()); });
  } else {
    gp = detail::make_task([&f] { f(); });
  }
  int rc = detail::run_main(gp, opts);
  return rc != 0 ? rc : code;
}

// Spawns f as a new task; it runs next on this P (Go's runnext), the spawner
// goes on. From a plain OS thread, the task goes to the global run queue.
// Only while gort::run is running.
template <class F>
void go(F&& f) {
  detail::task_start(detail::make_task(std::forward<F>(f)));
}

namespace detail {
void blocking_enter();
void blocking_exit();
}  // namespace detail

// Runs fn, which may block in a way the runtime cannot see (a futex of its
// own, a driver call, a library's internal lock), as a blocking call: the
// task's P goes on with other tasks if fn lasts (sysmon hands it to another
// M), and the task gets a P back afterwards. The common blocking libc calls
// (read, write, recv, send, accept, connect, poll, waitpid...) are handled
// already; sleeps in a task park it on a timer. On a plain thread, just fn().
// Nothing in fn may use the scheduler (no channel, no sleep_for, no yield).
template <class F>
decltype(auto) blocking(F&& fn) {
  struct leave {
    ~leave() { detail::blocking_exit(); }
  };
  detail::blocking_enter();
  leave l;
  return std::forward<F>(fn)();
}

void yield();                // lets other tasks run (Go's Gosched)
void sleep_for(Duration d);  // parks the task (or the thread) for d
void sleep_until(Clock::time_point t);
uint64_t task_id();  // the current task's id (1 is the main task), 0 outside tasks
bool in_task();
int maxprocs();          // Ps of the current (or last) run
int default_maxprocs();  // what run would use now: GORT_MAXPROCS or the CPU count

// Scheduler counters, cumulative over the process.
struct SchedStats {
  uint64_t tasks_spawned, tasks_exited, tasks_live;
  uint64_t steals;                // tasks moved by work stealing
  uint64_t global_runq;           // tasks taken from the global run queue
  uint64_t m_parks;               // an M went to sleep for lack of work
  uint64_t stacks_cached;         // pooled task stacks now
  uint64_t stacks_live;           // task stacks in use now
  uint64_t retakes;               // Ps sysmon took from Ms in a blocking call
  uint64_t preemptions;           // tasks that yielded because they were asked to
  uint64_t async_preemptions;     // ... of which at the preemption signal
  uint64_t netpoll_ready;         // tasks readied by the netpoller
  uint64_t netpoll_ready_sysmon;  // ... of which found by sysmon's poll
};
SchedStats sched_stats();

// ---------------------------------------------------------------- channels

// Sending on a closed channel, or closing a closed (or nil) channel.
struct ChanClosed : std::logic_error {
  using std::logic_error::logic_error;
};

// The nil channel: Chan<T> c(gort::nil).
struct nil_t {};
inline constexpr nil_t nil{};

// Go's chan T: a handle (copying shares the channel). Chan<T>(n) has a buffer
// of n (0: unbuffered, a send waits for its receiver). Chan<T>(gort::nil) is
// the nil channel: operations on it block forever (a select case on it is
// never chosen). Waiting senders and receivers are served in FIFO order.
template <class T>
class Chan {
 public:
  explicit Chan(size_t cap = 0) : c_(detail::chan_make(detail::elemtype_of<T>(), cap)) {}
  Chan(nil_t) : c_(nullptr) {}
  Chan(const Chan& o) : c_(o.c_) {
    if (c_) detail::chan_retain(c_);
  }
  Chan(Chan&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Chan& operator=(Chan o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~Chan() {
    if (c_) detail::chan_release(c_);
  }

  // Blocks until a receiver (or buffer space) takes v. Throws ChanClosed if
  // the channel is closed, or is closed while the sender waits.
  void send(T v) { detail::chan_send(c_, &v); }
  // Blocks until a value arrives: the value, or nullopt once the channel is
  // closed and drained.
  std::optional<T> recv() {
    alignas(T) unsigned char buf[sizeof(T)];
    if (!detail::chan_recv(c_, buf)) return std::nullopt;
    T* p = std::launder(reinterpret_cast<T*>(buf));
    std::optional<T> r(std::move(*p));
    p->~T();
    return r;
  }
  // Go's v, ok := <-c: true and out assigned, or false (closed and drained).
  bool recv(T& out) {
    alignas(T) unsigned char buf[sizeof(T)];
    if (!detail::chan_recv(c_, buf)) return false;
    T* p = std::launder(reinterpret_cast<T*>(buf));
    out = std::move(*p);
    p->~T();
    return true;
  }
  // Wakes every waiting receiver (they get nullopt) and every waiting sender
  // (they throw ChanClosed). Values already buffered can still be received.
  void close() { detail::chan_close(c_); }
  size_t size() const { return c_ ? detail::chan_len(c_) : 0; }
  size_t capacity() const { return c_ ? detail::chan_cap(c_) : 0; }
  bool is_nil() const { return c_ == nullptr; }
  detail::hchan* raw() const { return c_; }

  // for (T v : ch): receives until the channel is closed and drained.
  struct iterator {
    Chan* ch;
    std::optional<T> cur;
    T& operator*() { return *cur; }
    iterator& operator++() {
      cur = ch->recv();
      return *this;
    }
    bool operator!=(std::nullptr_t) const { return cur.has_value(); }
  };
  iterator begin() { return iterator{this, recv()}; }
  std::nullptr_t end() { return nullptr; }

 private:
  detail::hchan* c_;
};

// ---------------------------------------------------------------- select
//
//   int chosen = gort::select(
//       gort::on_recv(in, [&](int v, bool ok) { ... }),
//       gort::on_send(out, 42, [&] { ... }),
//       gort::on_default([&] { ... }));  // optional: never block
//
// Blocks until one case can proceed, picks uniformly at random among the
// ready ones, runs its handler and returns its index (the default case's
// index if it ran). A receive handler takes (T v, bool ok), (std::optional<T>)
// or nothing; ok is false (v default-constructed) when the channel is closed.
// A send case on a closed channel throws ChanClosed, as a send does.
template <class T, class F>
struct RecvCase {
  Chan<T>& ch;
  F fn;
  alignas(T) unsigned char buf[sizeof(T)];
};
template <class T, class F>
struct SendCase {
  Chan<T>& ch;
  T v;
  F fn;
};
template <class F>
struct DefaultCase {
  F fn;
};
struct NoHandler {
  void operator()() const {}
};

template <class T, class F = NoHandler>
RecvCase<T, F> on_recv(Chan<T>& ch, F fn = {}) {
  return RecvCase<T, F>{ch, std::move(fn), {}};
}
template <class T, class U, class F = NoHandler>
SendCase<T, F> on_send(Chan<T>& ch, U&& v, F fn = {}) {
  return SendCase<T, F>{ch, T(std::forward<U>(v)), std::move(fn)};
}
template <class F = NoHandler>
DefaultCase<F> on_default(F fn = {}) {
  return DefaultCase<F>{std::move(fn)};
}

namespace detail {
template <class C>
struct is_default : std::false_type {};
template <class F>
struct is_default<DefaultCase<F>> : std::true_type {};

template <class T, class F>
void fill(scase& s, RecvCase<T, F>& c) {
  s = scase{c.ch.raw(), c.buf, false};
}
template <class T, class F>
void fill(scase& s, SendCase<T, F>& c) {
  s = scase{c.ch.raw(), &c.v, true};
}
template <class T, class F>
void fire(RecvCase<T, F>& c, bool ok) {
  if (!ok) {
    if constexpr (std::is_invocable_v<F&, T, bool>) {
      c.fn(T{}, false);
    } else if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
      c.fn(std::optional<T>());
    } else {
      c.fn();
    }
    return;
  }
  T* p = std::launder(reinterpret_cast<T*>(c.buf));
  struct destroy {
    T* p;
    ~destroy() { p->~T(); }
  } d{p};
  if constexpr (std::is_invocable_v<F&, T, bool>) {
    c.fn(std::move(*p), true);
  } else if constexpr (std::is_invocable_v<F&, std::optional<T>>) {
    c.fn(std::optional<T>(std::move(*p)));
  } else {
    c.fn();
  }
}
template <class T, class F>
void fire(SendCase<T, F>& c, bool) {
  c.fn();
}
template <class F>
void fire(DefaultCase<F>& c, bool) {
  c.fn();
}
}  // namespace detail

template <class... Cases>
int select(Cases&&... cases) {
  constexpr int ndefault = (0 + ... + (detail::is_default<std::decay_t<Cases>>::value ? 1 : 0));
  static_assert(ndefault <= 1, "gort::select: at most one on_default");
  constexpr int n = sizeof...(Cases) - ndefault;
  detail::scase sc[n > 0 ? n : 1];
  int idx[n > 0 ? n : 1] = {};  // scase index -> argument index
  int defidx = -1;
  {
    int i = 0, arg = 0;
    auto add = [&](auto& c) {
      if constexpr (detail::is_default<std::decay_t<decltype(c)>>::value) {
        defidx = arg;
      } else {
        detail::fill(sc[i], c);
        idx[i++] = arg;
      }
      arg++;
    };
    (add(cases), ...);
  }
  bool ok = false;
  int chosen = detail::select_go(sc, n, ndefault == 0, &ok);
  int arg = chosen < 0 ? defidx : idx[chosen];
  int k = 0;
  auto run_chosen = [&](auto& c) {
    if (k++ == arg) detail::fire(c, ok);
  };
  (run_chosen(cases), ...);
  return arg;
}

// ---------------------------------------------------------------- timers

// Go's time.Timer: fires once, after d, by sending the time on channel().
// stop() prevents the send (true if it did, false if the timer had fired or
// was stopped); reset(d) rearms it (true if it was still pending). A stopped
// or fired timer's channel is drained on reset, as in Go 1.23.
class Timer {
 public:
  explicit Timer(Duration d);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  bool stop();
  bool reset(Duration d);
  Chan<Clock::time_point>& channel() { return ch_; }

 private:
  Chan<Clock::time_point> ch_;
  detail::timer* t_;
};

// Go's time.After: a channel that receives the time once, after d.
Chan<Clock::time_point> after(Duration d);

// Go's time.AfterFunc: runs f in its own task after d. stop() as Timer's.
class AfterFunc {
 public:
  AfterFunc(Duration d, std::function<void()> f);
  ~AfterFunc();  // does not stop the timer
  AfterFunc(const AfterFunc&) = delete;
  AfterFunc& operator=(const AfterFunc&) = delete;
  bool stop();
  bool reset(Duration d);

 private:
  detail::timer* t_;
};

// ---------------------------------------------------------------- sync

// Go's sync.Mutex: spins briefly, then parks the task (not its thread).
// Starvation mode: once a waiter has waited over 1 ms, the lock is handed to
// waiters in FIFO order until the queue drains. Not recursive; unlock of an
// unlocked Mutex is a fatal error. Works with std::lock_guard/unique_lock.
class Mutex {
 public:
  constexpr Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() {
    int32_t unlocked = 0;
    if (state_.compare_exchange_strong(unlocked, 1, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock();
  void unlock() {
    int32_t s = state_.fetch_sub(1, std::memory_order_release) - 1;
    if (s != 0) unlock_slow(s);
  }

 private:
  void lock_slow();
  void unlock_slow(int32_t new_state);
  std::atomic<int32_t> state_{0};
  uint32_t sema_ = 0;
};

// Go's sync.RWMutex: writer-preferring (a waiting writer holds back new
// readers). Works with std::shared_lock.
class RWMutex {
 public:
  constexpr RWMutex() = default;
  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  Mutex w_;
  uint32_t writer_sem_ = 0;
  uint32_t reader_sem_ = 0;
  std::atomic<int32_t> reader_count_{0};
  std::atomic<int32_t> reader_wait_{0};
};

// Go's sync.WaitGroup. add with a negative total is a fatal error.
class WaitGroup {
 public:
  constexpr WaitGroup() = default;
  void add(int64_t delta);
  void done() { add(-1); }
  void wait();
  // go(f) with add(1) before and done() after f.
  template <class F>
  void go(F&& f) {
    add(1);
    gort::go([this, fn = std::forward<F>(f)]() mutable {
      struct done_guard {
        WaitGroup* wg;
        ~done_guard() { wg->done(); }
      } d{this};
      fn();
    });
  }

 private:
  std::atomic<uint64_t> state_{0};  // counter << 32 | waiters
  uint32_t sema_ = 0;
};

// Go's sync.Once: call(f) runs f exactly once; every caller returns after
// it has completed.
class Once {
 public:
  template <class F>
  void call(F&& f) {
    if (done_.load(std::memory_order_acquire)) return;
    std::lock_guard<Mutex> g(m_);
    if (!done_.load(std::memory_order_relaxed)) {
      struct set_done {
        std::atomic<bool>& d;
        ~set_done() { d.store(true, std::memory_order_release); }
      } s{done_};
      f();
    }
  }

 private:
  std::atomic<bool> done_{false};
  Mutex m_;
};

// Go's sync.Cond over a Mutex: wait() unlocks it, parks, relocks it.
class Cond {
 public:
  explicit Cond(Mutex& m) : m_(m) {}
  void wait();
  void signal();
  void broadcast();

 private:
  Mutex& m_;
  std::atomic<uint32_t> wait_ticket_{0};
  uint32_t notify_ticket_ = 0;
  std::atomic<uint32_t> lock_{0};
  void* head_ = nullptr;
  void* tail_ = nullptr;
};

// ---------------------------------------------------------------- cancellation

// A cancellation token, like Go's context.Context without values: a tree of
// contexts where cancelling one cancels its descendants. done() is a channel
// that is closed on cancellation (use it in select); err() says why.
class Context {
 public:
  enum class Err { none, cancelled, deadline_exceeded };
  static Context background();  // never cancelled
  static Context with_cancel(const Context& parent);
  static Context with_timeout(const Context& parent, Duration d);
  void cancel() const;  // idempotent; no effect on background()
  bool cancelled() const { return err() != Err::none; }
  Err err() const;
  Chan<char> done() const;
  void wait() const;                // blocks until cancelled
  bool wait_for(Duration d) const;  // true if cancelled within d

  struct state;

 private:
  explicit Context(std::shared_ptr<state> s) : s_(std::move(s)) {}
  std::shared_ptr<state> s_;
};

}  // namespace gort

#endif  // GORT_RUNTIME_H

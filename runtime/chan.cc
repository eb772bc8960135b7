// Channels and select (Go's chan.go and select.go).
//
// An hchan is a ring buffer of dataqsiz slots, a queue of waiting senders
// and one of waiting receivers, all under hchan::lock. Invariants, as in Go:
//   - at most one of sendq and recvq is non-empty;
//   - buffered: qcount > 0 implies recvq is empty, qcount < dataqsiz
//     implies sendq is empty;
//   - unbuffered: qcount == 0.
// A value goes straight from a sender to a waiting receiver's storage (or
// from a waiting sender's stack), so an unbuffered send copies once and the
// woken task finds its operation done. A woken waiter learns the outcome
// from its sudog's success (false: the channel was closed). The readied
// waiter goes to the waker's runnext.
//
// Elements are C++ objects: they are moved with the element type's move
// constructor and destroyed in place, never copied with memcpy.
//
// select locks every channel of its cases in address order (each once),
// looks for a ready case in a random order (fairness), and otherwise puts a
// sudog on every channel and parks; the first channel to dequeue one of
// them wins the task (g::selectdone) and the task, once running, takes its
// other sudogs out.
#include <algorithm>
#include <new>

#include "alloc/sys.h"
#include "gc/roots.h"
#include "gort/runtime.h"
#include "runtime/proc.h"
#include "runtime/sudog.h"

namespace gort::detail {

struct hchan {
  alloc::mutex lock;
  bool closed = false;
  std::atomic<int32_t> refs{1};
  const elemtype* et;
  size_t dataqsiz;
  std::atomic<size_t> qcount{0};
  size_t sendx = 0, recvx = 0;
  unsigned char* buf = nullptr;
  rt::waitq recvq, sendq;
  // The buffer is a root of the collector: GC pointers waiting in a channel
  // stay alive. Every move of a value (into or out of a slot, straight to a
  // waiting task's stack) is followed by gc::shade_moved on its new place, Go's
  // typedmemmove barrier (gc/roots.h): a receiver's stack may have been
  // scanned already when the value leaves the buffer.
  gc::rootNode root;

  void* slot(size_t i) { return buf + i * et->size; }
};

}  // namespace gort::detail

namespace gort::rt {

namespace {

using detail::hchan;

size_t buf_align(const detail::elemtype* et) {
  return et->align < 16 ? 16 : et->align;
}

void park_forever(const char* reason) {
  gopark(nullptr, nullptr, reason);
  alloc::fatal("a task parked forever was woken");
}

// Gives the value at src to the waiting receiver sg (which the caller has
// dequeued) and wakes it: after c's lock is released.
void send_to(hchan* c, sudog* sg, void* src) {
  if (sg->elem) {
    c->et->move_construct(sg->elem, src);
    gc::shade_moved(sg->elem, c->et->size);
  }
  sg->success = true;
  sg->gp->param = sg;
  c->lock.unlock();
  ready(sg->gp);
}

// Receives into dst from the waiting sender sg: from its stack when
// unbuffered, else from the head of the (full) buffer, whose slot then takes
// the sender's value. Wakes the sender after unlocking.
void recv_from(hchan* c, sudog* sg, void* dst) {
  if (c->dataqsiz == 0) {
    c->et->move_construct(dst, sg->elem);
    gc::shade_moved(dst, c->et->size);
  } else {
    void* head = c->slot(c->recvx);
    c->et->move_construct(dst, head);
    gc::shade_moved(dst, c->et->size);
    c->et->destroy(head);
    c->et->move_construct(head, sg->elem);
    gc::shade_moved(head, c->et->size);
    if (++c->recvx == c->dataqsiz) c->recvx = 0;
    c->sendx = c->recvx;
  }
  sg->success = true;
  sg->gp->param = sg;
  c->lock.unlock();
  ready(sg->gp);
}

// Waits in q (c locked; unlocked once parked) until a counterpart completes
// the operation on elem: true, or false if c was closed instead.
bool wait_in(hchan* c, waitq& q, void* elem, const char* reason) {
  sudog s;
  s.gp = getg();
  s.elem = elem;
  q.enqueue(&s);
  goparkunlock(&c->lock, reason);
  return s.success;
}

void buf_put(hchan* c, void* src) {
  c->et->move_construct(c->slot(c->sendx), src);
  gc::shade_moved(c->slot(c->sendx), c->et->size);
  if (++c->sendx == c->dataqsiz) c->sendx = 0;
  c->qcount.fetch_add(1, std::memory_order_relaxed);
}

void buf_take(hchan* c, void* dst) {
  void* s = c->slot(c->recvx);
  c->et->move_construct(dst, s);
  gc::shade_moved(dst, c->et->size);
  c->et->destroy(s);
  if (++c->recvx == c->dataqsiz) c->recvx = 0;
  c->qcount.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

}  // namespace gort::rt

namespace gort::detail {

using namespace gort::rt;

// A channel operation is a preemption point (preempt_check). While it runs,
// element moves (program code) run under channel locks, where an
// asynchronous preemption must not land: g::nopreempt says so (preempt.cc).
struct chan_op {
  g* gp = nullptr;
  chan_op() {
    preempt_check();
    m* mp = getm();
    if (mp && mp->curg) (gp = mp->curg)->nopreempt++;
  }
  ~chan_op() {
    if (gp) gp->nopreempt--;
  }
};

[[noreturn]] void throw_chan_closed(const char* what) {
  throw ChanClosed(what);
}

hchan* chan_make(const elemtype* et, size_t cap) {
  if (et->size != 0 && cap > (size_t{1} << 40) / et->size)
    throw std::length_error("gort::Chan: buffer size out of range");
  hchan* c = new hchan;
  c->et = et;
  c->dataqsiz = cap;
  if (cap > 0) {
    size_t bytes = cap * (et->size ? et->size : 1);
    c->buf = static_cast<unsigned char*>(::operator new(bytes, std::align_val_t(buf_align(et))));
    if (et->size >= sizeof(void*)) gc::add_root_node(&c->root, c->buf, bytes);
  }
  return c;
}

void chan_retain(hchan* c) {
  c->refs.fetch_add(1, std::memory_order_relaxed);
}

void chan_release(hchan* c) {
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // Nobody can reach the channel: no waiter either (a waiter holds a handle).
  size_t n = c->qcount.load(std::memory_order_relaxed), i = c->recvx;
  for (; n > 0; n--) {
    c->et->destroy(c->slot(i));
    if (++i == c->dataqsiz) i = 0;
  }
  gc::remove_root_node(&c->root);
  if (c->buf) ::operator delete(c->buf, std::align_val_t(buf_align(c->et)));
  delete c;
}

void chan_send(hchan* c, void* elem) {
  chan_op op;
  if (!c) park_forever("chan send (nil chan)");
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    throw_chan_closed("send on closed channel");
  }
  if (sudog* sg = c->recvq.dequeue()) return send_to(c, sg, elem);
  if (c->qcount.load(std::memory_order_relaxed) < c->dataqsiz) {
    buf_put(c, elem);
    c->lock.unlock();
    return;
  }
  if (!wait_in(c, c->sendq, elem, "chan send")) throw_chan_closed("send on closed channel");
}

bool chan_recv(hchan* c, void* elem) {
  chan_op op;
  if (!c) park_forever("chan receive (nil chan)");
  c->lock.lock();
  if (c->closed && c->qcount.load(std::memory_order_relaxed) == 0) {
    c->lock.unlock();
    return false;
  }
  if (sudog* sg = c->sendq.dequeue()) {
    recv_from(c, sg, elem);
    return true;
  }
  if (c->qcount.load(std::memory_order_relaxed) > 0) {
    buf_take(c, elem);
    c->lock.unlock();
    return true;
  }
  return wait_in(c, c->recvq, elem, "chan receive");
}

void chan_close(hchan* c) {
  if (!c) throw_chan_closed("close of nil channel");
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    throw_chan_closed("close of closed channel");
  }
  c->closed = true;
  // Every waiter fails: receivers get nothing, senders throw.
  g* wake = nullptr;
  for (waitq* q : {&c->recvq, &c->sendq}) {
    while (sudog* sg = q->dequeue()) {
      sg->success = false;
      sg->gp->param = sg;
      sg->gp->schedlink = wake;
      wake = sg->gp;
    }
  }
  c->lock.unlock();
  while (wake) {
    g* next = wake->schedlink;
    ready(wake);
    wake = next;
  }
}

size_t chan_len(hchan* c) {
  return c->qcount.load(std::memory_order_relaxed);
}

size_t chan_cap(hchan* c) {
  return c->dataqsiz;
}

namespace {

void sellock(scase* cases, const int* order, int n) {
  hchan* last = nullptr;
  for (int i = 0; i < n; i++) {
    hchan* c = cases[order[i]].c;
    if (c != last) c->lock.lock();
    last = c;
  }
}

void selunlock(scase* cases, const int* order, int n) {
  // Unlocks the lowest address last: once it is unlocked the selecting task
  // may run, and this must not read its stack (cases, order) any more.
  for (int i = n - 1; i >= 0; i--) {
    hchan* c = cases[order[i]].c;
    if (i > 0 && cases[order[i - 1]].c == c) continue;
    c->lock.unlock();
  }
}

// Unlocks every channel but keep (which the caller hands on locked).
void selunlock_except(scase* cases, const int* order, int n, hchan* keep) {
  for (int i = n - 1; i >= 0; i--) {
    hchan* c = cases[order[i]].c;
    if (c == keep || (i > 0 && cases[order[i - 1]].c == c)) continue;
    c->lock.unlock();
  }
}

struct selpark {
  scase* cases;
  const int* order;
  int n;
};

void selparkcommit(void* arg, g*) {
  selpark* sp = static_cast<selpark*>(arg);
  selunlock(sp->cases, sp->order, sp->n);
}

// Small selects keep their bookkeeping on the stack.
constexpr int kStackCases = 16;

}  // namespace

int select_go(scase* cases, int ncases, bool block, bool* recv_ok) {
  chan_op op;
  *recv_ok = false;
  int stack_buf[3 * kStackCases];
  int* mem = ncases <= kStackCases ? stack_buf
                                   : static_cast<int*>(::operator new(sizeof(int) * 3 * ncases));
  struct freer {
    int* mem;
    int* stack;
    ~freer() {
      if (mem != stack) ::operator delete(mem);
    }
  } fr{mem, stack_buf};
  int* poll = mem;
  int* order = mem + ncases;
  // Random poll order over the non-nil cases (Fisher-Yates as they come),
  // lock order by channel address.
  int n = 0;
  for (int i = 0; i < ncases; i++) {
    if (!cases[i].c) continue;
    int j = static_cast<int>(fastrand() % static_cast<uint64_t>(n + 1));
    poll[n] = poll[j];
    poll[j] = i;
    order[n] = i;
    n++;
  }
  if (n == 0) {
    if (!block) return -1;
    park_forever("select (no cases)");
  }
  std::sort(order, order + n, [cases](int a, int b) {
    return reinterpret_cast<uintptr_t>(cases[a].c) < reinterpret_cast<uintptr_t>(cases[b].c);
  });
  sellock(cases, order, n);

  // Pass 1: a case that can proceed now.
  for (int k = 0; k < n; k++) {
    int i = poll[k];
    scase& cs = cases[i];
    hchan* c = cs.c;
    if (cs.is_send) {
      if (c->closed) {
        selunlock(cases, order, n);
        throw_chan_closed("send on closed channel");
      }
      if (sudog* sg = c->recvq.dequeue()) {
        selunlock_except(cases, order, n, c);  // send_to unlocks c
        send_to(c, sg, cs.elem);
        return i;
      }
      if (c->qcount.load(std::memory_order_relaxed) < c->dataqsiz) {
        buf_put(c, cs.elem);
        selunlock(cases, order, n);
        return i;
      }
    } else {
      if (sudog* sg = c->sendq.dequeue()) {
        selunlock_except(cases, order, n, c);  // recv_from unlocks c
        recv_from(c, sg, cs.elem);
        *recv_ok = true;
        return i;
      }
      if (c->qcount.load(std::memory_order_relaxed) > 0) {
        buf_take(c, cs.elem);
        selunlock(cases, order, n);
        *recv_ok = true;
        return i;
      }
      if (c->closed) {
        selunlock(cases, order, n);
        return i;
      }
    }
  }
  if (!block) {
    selunlock(cases, order, n);
    return -1;
  }

  // Pass 2: wait on every channel.
  g* gp = getg();
  if (!gp) alloc::fatal("a blocking select on the scheduler's own stack");
  gp->selectdone.store(0, std::memory_order_relaxed);
  gp->param = nullptr;
  sudog stack_sg[kStackCases];
  sudog* sgs = ncases <= kStackCases ? stack_sg : new sudog[ncases];
  struct sg_freer {
    sudog* p;
    sudog* stack;
    ~sg_freer() {
      if (p != stack) delete[] p;
    }
  } sgf{sgs, stack_sg};
  for (int k = 0; k < n; k++) {
    int i = order[k];
    sudog* s = &sgs[i];
    s->gp = gp;
    s->elem = cases[i].elem;
    s->is_select = true;
    s->case_index = i;
    s->success = false;
    (cases[i].is_send ? cases[i].c->sendq : cases[i].c->recvq).enqueue(s);
  }
  selpark sp{cases, order, n};
  gopark(selparkcommit, &sp, "select");

  sellock(cases, order, n);
  sudog* won = static_cast<sudog*>(gp->param);
  gp->param = nullptr;
  for (int k = 0; k < n; k++) {
    int i = order[k];
    if (&sgs[i] == won) continue;
    (cases[i].is_send ? cases[i].c->sendq : cases[i].c->recvq).remove(&sgs[i]);
  }
  selunlock(cases, order, n);
  if (!won) alloc::fatal("select woken without a case");
  int i = won->case_index;
  if (cases[i].is_send) {
    if (!won->success) throw_chan_closed("send on closed channel");
  } else {
    *recv_ok = won->success;
  }
  return i;
}

}  // namespace gort::detail

// gort::Context: cancellation trees (Go's context package, without values).
//
// A state holds its error, a done channel that is closed exactly once on
// cancellation, and weak references to its children. Cancelling takes the
// state's lock only to flip the error and take the children; the children
// are cancelled after it is released, so a tree is cancelled top-down with
// one lock held at a time (lock order: none needed).
#include <memory>
#include <vector>

#include "alloc/lock.h"
#include "gort/runtime.h"

namespace gort {

struct Context::state {
  alloc::mutex lock;
  std::atomic<int> err{0};
  Chan<char> done;
  // A child keeps its parent alive (so c = with_cancel(c) chains hold
  // together); a parent only knows its children weakly.
  std::shared_ptr<state> parent;
  std::vector<std::weak_ptr<state>> children;
  std::unique_ptr<AfterFunc> timer;

  explicit state(bool never) : done(never ? Chan<char>(nil) : Chan<char>(size_t{0})) {}
  ~state() {
    if (timer) timer->stop();
  }

  void cancel(Err why) {
    std::vector<std::weak_ptr<state>> kids;
    {
      // err, then done closed, under one lock, as Go does: a receiver woken
      // by done finds err set, and err() waits for the lock, so whoever sees
      // the error finds done closed.
      alloc::lock_guard g(lock);
      if (err.load(std::memory_order_relaxed) != 0 || done.is_nil()) return;
      err.store(static_cast<int>(why), std::memory_order_release);
      done.close();
      kids.swap(children);
    }
    for (auto& w : kids)
      if (auto k = w.lock()) k->cancel(why);
  }
};

Context Context::background() {
  static std::shared_ptr<state> bg = std::make_shared<state>(true);
  return Context(bg);
}

Context Context::with_cancel(const Context& parent) {
  auto child = std::make_shared<state>(false);
  child->parent = parent.s_;
  state* ps = parent.s_.get();
  Err perr = Err::none;
  {
    alloc::lock_guard g(ps->lock);
    perr = static_cast<Err>(ps->err.load(std::memory_order_relaxed));
    if (perr == Err::none && !ps->done.is_nil()) {
      // Forget children that are gone before adding one.
      if (ps->children.size() >= 16 && (ps->children.size() & (ps->children.size() - 1)) == 0)
        std::erase_if(ps->children, [](const std::weak_ptr<state>& w) { return w.expired(); });
      ps->children.push_back(child);
    }
  }
  if (perr != Err::none) child->cancel(perr);
  return Context(child);
}

Context Context::with_timeout(const Context& parent, Duration d) {
  Context c = with_cancel(parent);
  std::weak_ptr<state> w = c.s_;
  c.s_->timer = std::make_unique<AfterFunc>(d, [w] {
    if (auto s = w.lock()) s->cancel(Err::deadline_exceeded);
  });
  return c;
}

void Context::cancel() const {
  s_->cancel(Err::cancelled);
}

Context::Err Context::err() const {
  int e = s_->err.load(std::memory_order_acquire);
  if (e != 0) alloc::lock_guard g(s_->lock);  // wait until cancel has closed done
  return static_cast<Err>(e);
}

Chan<char> Context::done() const {
  return s_->done;
}

void Context::wait() const {
  Chan<char> d = s_->done;
  d.recv();
}

bool Context::wait_for(Duration d) const {
  Chan<char> done = s_->done;
  Chan<Clock::time_point> t = after(d);
  bool cancelled = false;
  select(on_recv(done, [&] { cancelled = true; }), on_recv(t));
  return cancelled;
}

}  // namespace gort

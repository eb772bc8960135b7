/* gort/scope.h: escape-aware scoped pooling (docs/pool.md, "Scopes").
 *
 * A scope is a region of a task's (or thread's) execution. GC objects
 * allocated inside it with gort_scope_alloc are recycled at once when it
 * ends, unless they escaped; escaped ones live on and the collector frees
 * them like any GC object. Go keeps values that do not escape on the stack;
 * this is the same bargain for a C or C++ program, decided at run time.
 *
 * An object escapes when a pointer into it is
 *  - stored through the write barrier (gort_gc_write, gort::gc::Member) into
 *    a GC object, a root range or any other place, except into an object of
 *    the same scope (or of a scope nested in it) of the same task;
 *  - given to a handle (gort_gc_handle_new/set, gort::gc::Persistent) or
 *    found in a range given to gort_gc_add_roots;
 *  - declared with gort_scope_escape (C++: gort::escape): required for every
 *    place the barrier does not see: malloc memory, a plain global, another
 *    task through a channel or a closure, a pointer kept in a local variable
 *    past the scope's end.
 * What an escaped object points to escapes with it. The rules (docs/pool.md):
 * after its scope ends, a scope object that did not escape must not be used;
 * a local variable may still hold its address (that is not a use). Stores
 * into GC objects must use the barrier, as everywhere in gort.
 *
 * Scopes nest; they belong to the task that opened them (a task may block or
 * move to another thread inside one) and must end on the same task, in
 * reverse order. Outside any scope gort_scope_alloc is gort_gc_alloc.
 * Scope objects are zeroed, 16-byte aligned, and scanned conservatively.
 *
 * GORT_DEBUG=poolcheck=1 poisons recycled objects instead of reusing them
 * and fails (naming the allocation site) when a root or a live object still
 * points at one; GORT_DEBUG=escapestats=1 prints per-site statistics at exit.
 */
#ifndef GORT_SCOPE_H
#define GORT_SCOPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opens a scope on the calling task or thread; returns its depth (1 for the
 * outermost). */
int gort_scope_begin(void);
/* Ends the innermost scope: its objects that did not escape are recycled.
 * A fatal error without a scope open. */
void gort_scope_end(void);
/* How many scopes the calling task or thread has open. */
int gort_scope_depth(void);

/* A zeroed object of size bytes in the innermost scope (gort_gc_alloc(size,
 * NULL) outside any scope). NULL with errno ENOMEM. The site, for the
 * statistics and poolcheck's reports, is the caller's return address;
 * GORT_SCOPE_ALLOC passes file and line instead. */
void* gort_scope_alloc(size_t size);
void* gort_scope_alloc_at(size_t size, const char* file, int line);
#define GORT_SCOPE_ALLOC(size) gort_scope_alloc_at((size), __FILE__, __LINE__)

/* Declares that p (NULL, or any pointer) escapes its scope: if it points
 * into a scope object, that object is never recycled. */
void gort_scope_escape(const void* p);
/* 1 if p points into a scope object that is still to be recycled when its
 * scope ends (it has not escaped), else 0. */
int gort_scope_owns(const void* p);

/* Per-site escape statistics (collected while enabled: GORT_DEBUG=
 * escapestats=1 or poolcheck=1, or gort_escape_stats_enable). */
typedef struct gort_escape_site {
  const char* file; /* GORT_SCOPE_ALLOC's file, or NULL: see pc */
  int line;
  const void* pc;    /* the caller's return address when file is NULL */
  uint64_t allocs;   /* objects allocated in a scope */
  uint64_t recycled; /* recycled when their scope ended */
  uint64_t escaped;  /* escaped themselves */
  uint64_t retained; /* not recycled because a neighbour escaped */
  uint64_t bytes, bytes_recycled, bytes_escaped, bytes_retained;
} gort_escape_site;
/* Turns collection on (1) or off (0); returns the previous setting. Only
 * scopes opened while it is on are counted. */
int gort_escape_stats_enable(int on);
/* Copies up to n sites (most bytes first) into out; returns how many there
 * are in all. */
size_t gort_escape_stats(gort_escape_site* out, size_t n);
/* Prints the table to fd (what escapestats=1 prints at exit). */
void gort_escape_stats_print(int fd);
void gort_escape_stats_reset(void);

#ifdef __cplusplus
}

#include <new>
#include <type_traits>
#include <utility>

namespace gort {

// A scope for the block it lives in (RAII over gort_scope_begin/end).
class Scope {
 public:
  Scope() { gort_scope_begin(); }
  ~Scope() { gort_scope_end(); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// A T in the innermost scope (a GC object outside any scope). T must be
// trivially destructible: a recycled object's destructor never runs.
// Throws std::bad_alloc. Always inlined, so that the site is the caller's.
template <class T, class... Args>
__attribute__((always_inline)) inline T* scope_new(Args&&... args) {
  static_assert(std::is_trivially_destructible_v<T>, "scope objects are never destroyed");
  static_assert(alignof(T) <= 16, "scope objects are 16-byte aligned");
  void* p = gort_scope_alloc(sizeof(T));
  if (!p) throw std::bad_alloc();
  return new (p) T(std::forward<Args>(args)...);
}
template <class T, class... Args>
T* scope_new_at(const char* file, int line, Args&&... args) {
  static_assert(std::is_trivially_destructible_v<T>, "scope objects are never destroyed");
  static_assert(alignof(T) <= 16, "scope objects are 16-byte aligned");
  void* p = gort_scope_alloc_at(sizeof(T), file, line);
  if (!p) throw std::bad_alloc();
  return new (p) T(std::forward<Args>(args)...);
}
// scope_new with the site as file:line.
#define GORT_SCOPE_NEW(T, ...) \
  ::gort::scope_new_at<T>(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)

// p escapes its scope (gort_scope_escape).
inline void escape(const void* p) {
  gort_scope_escape(p);
}

}  // namespace gort

#endif /* __cplusplus */
#endif /* GORT_SCOPE_H */

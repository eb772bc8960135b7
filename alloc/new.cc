// Every replaceable operator new and delete ([new.delete]): plain, array,
// nothrow, sized and aligned forms.
//
// The throwing forms loop as the standard says: try to allocate; on failure
// call the installed std::new_handler and retry, or throw std::bad_alloc if
// there is none. The nothrow forms return nullptr instead of throwing (also
// when the handler throws bad_alloc). The fast path is malloc's, inlined; only
// failure goes out of line. Sized deletes ignore the size: the span knows it.
#include <new>

#include "alloc/mcache.h"
#include "gort/malloc.h"

#define GORT_EXPORT __attribute__((visibility("default")))

namespace gort::alloc {

namespace {

__attribute__((noinline)) void* new_slow(size_t size, size_t align, bool nothrow) {
  for (;;) {
    void* p = align ? gort_aligned_alloc(align, size) : malloc_fast(size);
    if (p) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        h();
      } catch (const std::bad_alloc&) {
        return nullptr;
      }
    } else {
      h();
    }
  }
}

inline void* new_impl(size_t size) {
  void* p = malloc_fast(size);
  if (GORT_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0, false);
}

inline void* new_aligned(size_t size, std::align_val_t al, bool nothrow) {
  size_t a = static_cast<size_t>(al);
  void* p = gort_aligned_alloc(a, size);
  if (GORT_LIKELY(p != nullptr)) return p;
  return new_slow(size, a, nothrow);
}

inline void* new_nothrow(size_t size) {
  void* p = malloc_fast(size);
  if (GORT_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0, true);
}

}  // namespace
}  // namespace gort::alloc

using gort::alloc::free_fast;
using gort::alloc::new_aligned;
using gort::alloc::new_impl;
using gort::alloc::new_nothrow;

GORT_EXPORT void* operator new(size_t n) {
  return new_impl(n);
}
GORT_EXPORT void* operator new[](size_t n) {
  return new_impl(n);
}
GORT_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n);
}
GORT_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n);
}
GORT_EXPORT void* operator new(size_t n, std::align_val_t a) {
  return new_aligned(n, a, false);
}
GORT_EXPORT void* operator new[](size_t n, std::align_val_t a) {
  return new_aligned(n, a, false);
}
GORT_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned(n, a, true);
}
GORT_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned(n, a, true);
}

GORT_EXPORT void operator delete(void* p) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete(void* p, size_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p, size_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete(void* p, std::align_val_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p, std::align_val_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  free_fast(p);
}
GORT_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  free_fast(p);
}

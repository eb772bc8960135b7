// Execution contexts: making a new one on a fresh stack and switching
// between two (runtime/switch.S).
//
// A suspended context is nothing but its saved stack pointer. A switch saves
// the callee-saved registers on the old stack, stores its stack pointer and
// loads the new one; what the switching code must do after the switch (give
// the old task to a run queue, unlock what it waited on) is done by the code
// that resumes on the new stack: see m::after in runtime/proc.h.
#pragma once

#include <cstdint>

extern "C" void gort_ctx_switch(void** save_sp, void* new_sp);
// The same, to a task: takes the new stack pointer from *load_sp and clears
// it, so that a running task's saved sp reads null (the collector relies on
// it: gc/roots.h). Both switches lie between gort_ctx_switch_region_start
// and _end, where the collector does not stop a thread.
extern "C" void gort_ctx_switch_to(void** save_sp, void** load_sp);
extern "C" void gort_ctx_start();

namespace gort::rt {

// Prepares a context that, when switched to, calls fn(arg) on the stack
// whose top (highest address) is hi. fn must never return.
inline void* ctx_make(void* hi, void (*fn)(void*), void* arg) {
  uintptr_t top = reinterpret_cast<uintptr_t>(hi) & ~uintptr_t{15};
  // Popped by gort_ctx_switch: r15, r14, r13, r12, rbx, rbp, then the
  // return address. After the ret, rsp = top - 16, 16-byte aligned, as the
  // ABI wants it before gort_ctx_start's call.
  uintptr_t* sp = reinterpret_cast<uintptr_t*>(top - 72);
  sp[0] = 0;                                 // r15
  sp[1] = 0;                                 // r14
  sp[2] = reinterpret_cast<uintptr_t>(arg);  // r13
  sp[3] = reinterpret_cast<uintptr_t>(fn);   // r12
  sp[4] = 0;                                 // rbx
  sp[5] = 0;                                 // rbp: ends frame-pointer walks
  sp[6] = reinterpret_cast<uintptr_t>(&gort_ctx_start);
  return sp;
}

}  // namespace gort::rt

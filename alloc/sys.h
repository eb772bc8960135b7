// The allocator's only contact with the operating system's memory calls.
//
// Heap address space is reserved with mmap as PROT_NONE (Go's sysReserve) and
// made read-write piece by piece as the heap grows (sysMap): a PROT_NONE
// mapping costs address space but no commit charge, so a program under
// vm.overcommit_memory=2 is charged only for what the heap uses. Linux backs a
// read-write page only when it is first touched, so committed memory costs RSS
// only once used. Under an address-space limit (ulimit -v, RLIMIT_AS) every
// mapping counts, PROT_NONE or not, so reservations are sized to the need,
// never fixed up front (alloc/mheap.h, alloc/fixalloc.h). Memory goes back
// with madvise(MADV_DONTNEED), after which the pages read as zero when touched
// again. gort never calls
// madvise(MADV_HUGEPAGE): arenas are 2 MiB aligned so the kernel *can* use
// huge pages when THP is "always", but gort does not force them (see
// docs/tuning.md, "Transparent Huge Pages").
//
// Nothing here calls malloc; everything here is safe before libc is ready.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gort::alloc {

// Maps n bytes aligned to align (a power of two >= the OS page size), or
// returns nullptr. noreserve maps without swap accounting (metadata tables that
// are mostly never touched).
void* sys_map(size_t n, size_t align, bool noreserve = false);
// Reserves n bytes of address space aligned to align, inaccessible
// (PROT_NONE), at hint if hint is not null (nullptr if that address is taken),
// else anywhere. nullptr: the OS refused (errno ENOMEM).
void* sys_reserve(void* hint, size_t n, size_t align);
// Makes reserved pages [p, p+n) read-write (page-aligned). false: the commit
// limit was reached.
bool sys_commit(void* p, size_t n);
// The address-space limit (RLIMIT_AS) in bytes, or SIZE_MAX if none.
size_t sys_as_limit();
// Unmaps a range obtained from sys_map or sys_reserve.
void sys_unmap(void* p, size_t n);
// Returns the pages of [p, p+n) to the OS; they read as zero afterwards.
void sys_release(void* p, size_t n);
// Asks for (huge true) or against transparent huge pages on [p, p+n).
void sys_hugepage_advice(void* p, size_t n, bool huge);
// Whether the kernel backs anonymous memory with huge pages unasked
// (/sys/kernel/mm/transparent_hugepage/enabled reads "[always]"). Reads a
// file: not for a path that must not block.
bool sys_thp_always();
// Releases the whole pages inside [p, p+n) (the partial pages at either end
// stay): for metadata that is mostly, not wholly, page-aligned.
void sys_release_inner(void* p, size_t n);
// Monotonic clock in nanoseconds (vDSO; no allocation).
int64_t nanotime();
// The same clock at tick resolution (a few ms), for ages of free memory:
// reading it costs a few loads, cheap enough for allocator slow paths.
int64_t coarse_nanotime();
// Returns once every thread of the process has executed a full memory
// barrier (Windows' FlushProcessWriteBuffers): a store another thread made
// before its barrier is visible after this returns. membarrier(2)'s private
// expedited command, registered on first use; where the kernel has none, a
// permission change of a page (its TLB shootdown interrupts every CPU that
// runs one of the process's threads, as .NET does on such kernels). For the
// collector's mark start (gc/cycle.cc): threads it does not stop. The first
// call registers with the kernel and may take milliseconds.
void process_fence();
// Writes the whole buffer to fd, retrying on EINTR; for diagnostics.
void sys_write_all(int fd, const char* buf, size_t n);
// Prints "gort: fatal error: <msg>" and aborts. Never allocates.
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints "gort: <msg>" on stderr. Never allocates.
void print_err(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace gort::alloc

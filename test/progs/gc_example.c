/* The example of docs/gc.md: a tiny Lisp-like heap of cons cells, the way
 * an interpreter would use gort's collector from C. Built and run by
 * test/gc/api_test.cc (it must print "ok"). */
#include <gort/gc.h>
#include <stdio.h>

/* A cons cell: two pointer words. The type says so (bits 0 and 1). */
typedef struct cell {
  struct cell* car;
  struct cell* cdr;
  long value;
} cell;
static const uint64_t cell_map[1] = {0x3};
static const gort_gc_type cell_type = {"cell", sizeof(cell), cell_map, NULL};

/* The interpreter's globals: a root range. */
static cell* globals[16];

static cell* cons(long value, cell* cdr) {
  cell* c = gort_gc_alloc(sizeof(cell), &cell_type);
  c->value = value;
  gort_gc_write((void**)&c->cdr, cdr); /* every pointer store into the heap */
  return c;
}

static void on_free(void* obj, void* arg) {
  (void)arg;
  printf("finalized a cell holding %ld\n", ((cell*)obj)->value);
}

int main(void) {
  gort_gc_add_roots(globals, sizeof globals);

  /* A list of 1000 cells, kept in a global. */
  cell* list = NULL;
  for (long i = 0; i < 1000; i++) list = cons(i, list);
  gort_gc_write((void**)&globals[0], list);

  /* Garbage: a million cells nothing keeps. */
  for (long i = 0; i < 1000000; i++) cons(i, NULL);

  /* A finalizer and a weak reference on a cell that becomes garbage. */
  cell* doomed = cons(42, NULL);
  gort_gc_set_finalizer(doomed, on_free, NULL);
  gort_gc_weak* w = gort_gc_weak_new(doomed);
  doomed = NULL;

  gort_gc_collect();
  gort_gc_run_finalizers();

  long sum = 0, n = 0;
  for (cell* c = globals[0]; c; c = c->cdr) sum += c->value, n++;
  gort_gc_stats_t st;
  gort_gc_stats(&st);
  printf("list: %ld cells, sum %ld; %llu cycles, %llu KiB live, longest pause %llu us\n", n, sum,
         (unsigned long long)st.cycles, (unsigned long long)(st.heap_live >> 10),
         (unsigned long long)(st.pause_max_ns / 1000));
  /* The weak reference may still see the cell if a stale copy of its
   * address sits on this thread's stack (the stack is scanned
   * conservatively); it never sees freed memory. */
  printf("weak reference: %s\n", gort_gc_weak_get(w) ? "still alive" : "cleared");
  gort_gc_weak_free(w);
  puts(n == 1000 && sum == 999L * 1000 / 2 ? "ok" : "WRONG");
  return 0;
}

/* gort/metrics.h: every counter the runtime keeps, read by name in one call
 * (the answer to Go's runtime/metrics).
 *
 *   const gort_metric_desc_t* all;
 *   size_t n = gort_metrics_all(&all);         // the names, units, meanings
 *   const char* names[] = {"/gc/cycles:cycles", "/memory/heap/inuse:bytes"};
 *   uint64_t v[2];
 *   gort_metrics_read(names, v, 2);
 *
 * A name is /group/what:unit, as in Go. Every value is a uint64_t; a
 * cumulative counter only grows, a gauge is the value now. One read takes
 * one snapshot of each subsystem it touches (allocator, collector,
 * scheduler), so values of the same subsystem are consistent with each
 * other as gort_malloc_stats, gort_gc_stats and gort::sched_stats report
 * them; values of different subsystems are read one after the other.
 * GORT_DEBUG=metrics=1 prints them all on stderr at exit. */
#ifndef GORT_METRICS_H
#define GORT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gort_metric_desc {
  const char* name;        /* "/gc/cycles:cycles" */
  const char* description; /* one sentence */
  int cumulative;          /* 1: a counter that only grows; 0: a gauge */
} gort_metric_desc_t;

/* Sets *out to the table of every metric (static storage, never freed) and
 * returns its length. */
size_t gort_metrics_all(const gort_metric_desc_t** out);

/* Reads n metrics by name into values. Returns how many names were known;
 * the value of an unknown name is set to 0 (and a NULL name is unknown).
 * Never allocates from the GC heap; safe from any thread. */
size_t gort_metrics_read(const char* const* names, uint64_t* values, size_t n);

/* Prints every metric, one "gort: metrics: NAME VALUE" line each, to fd
 * (what GORT_DEBUG=metrics=1 prints at exit). */
void gort_metrics_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* GORT_METRICS_H */

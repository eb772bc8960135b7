/* gort/trace.h: the execution trace (the answer to Go's runtime/trace and
 * `go tool trace`), written as Chrome trace-event JSON that Perfetto's UI
 * (ui.perfetto.dev) and chrome://tracing open.
 *
 *   gort_trace_start("out.json");   // or GORT_TRACE=out.json in the environment
 *   ...                             // tasks, channels, GC cycles...
 *   gort_trace_stop();              // writes out.json
 *
 * A trace shows, per P and per OS thread (M), which task ran when and why it
 * stopped (blocked on a channel, select, mutex, sleep, I/O; yielded;
 * preempted; exited; entered a blocking call), blocking calls, GC cycles and
 * phases, stop-the-world pauses, mark assists, sweeps and scavenger passes.
 * Events go into a ring buffer per P (GORT_TRACE_BUFFER bytes each, 4 MiB by
 * default): a long trace keeps its newest events. A trace still running at
 * exit is written then. docs/observability.md says what each event means. */
#ifndef GORT_TRACE_H
#define GORT_TRACE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Starts recording into path ("%p" in it becomes the process id); the file
 * is created (truncated) now. Returns 0, or -1 with errno: EBUSY (a trace is
 * already recording), EINVAL (empty path), or open()'s error. */
int gort_trace_start(const char* path);

/* Stops recording and writes the trace. Returns 0, or -1 with errno: EINVAL
 * (no trace is recording) or the write's error. From a task, the task leaves
 * its P to the others while the file is written. */
int gort_trace_stop(void);

/* 1 while a trace is recording, else 0. */
int gort_trace_enabled(void);

#ifdef __cplusplus
}

namespace gort {
/* C++ spelling: false (errno set) on failure. */
inline bool trace_start(const char* path) {
  return gort_trace_start(path) == 0;
}
inline bool trace_stop() {
  return gort_trace_stop() == 0;
}
}  // namespace gort
#endif

#endif /* GORT_TRACE_H */

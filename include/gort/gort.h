/* gort/gort.h: all of gort's public API. */
#ifndef GORT_GORT_H
#define GORT_GORT_H

#include <gort/gc.h>
#include <gort/malloc.h>
#include <gort/metrics.h>
#include <gort/pool.h>
#include <gort/trace.h>

#ifdef __cplusplus
#include <gort/net.h>
#include <gort/runtime.h>
#endif

#endif /* GORT_GORT_H */

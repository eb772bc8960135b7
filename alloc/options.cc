// Environment parsing; see options.h.
#include "alloc/options.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc/mprof.h"
#include "alloc/sys.h"

namespace gort::alloc {

constinit options g_options;
void (*g_exit_report)() = nullptr;

static bool parse_uint(const char* s, size_t len, int64_t max, int64_t* out) {
  if (len == 0 || len > 18) return false;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

bool parse_scavenge(const char* s, int64_t* delay_ns, const char** why) {
  if (strcmp(s, "off") == 0) {
    *delay_ns = -1;
    return true;
  }
  int64_t ms;
  if (!parse_uint(s, strlen(s), 3600 * 1000, &ms)) {
    *why = "expected 'off' or a delay in milliseconds from 0 to 3600000";
    return false;
  }
  *delay_ns = ms * 1000000;
  return true;
}

bool parse_thp(const char* s, thpMode* mode, const char** why) {
  if (strcmp(s, "system") == 0)
    *mode = thpMode::system;
  else if (strcmp(s, "on") == 0)
    *mode = thpMode::on;
  else if (strcmp(s, "off") == 0)
    *mode = thpMode::off;
  else {
    *why = "expected 'system', 'on' or 'off'";
    return false;
  }
  return true;
}

bool parse_debug(const char* s, options* o, char* why, unsigned whylen) {
  // A comma-separated list of name=value, like GODEBUG.
  while (*s) {
    const char* end = strchr(s, ',');
    size_t len = end ? static_cast<size_t>(end - s) : strlen(s);
    const char* eq = static_cast<const char*>(memchr(s, '=', len));
    if (len == 0) {
      s += 1;
      continue;
    }
    size_t nlen = eq ? static_cast<size_t>(eq - s) : len;
    int64_t v = 0;
    // The heap profile's path is the one setting whose value is not a number.
    if (eq && nlen == 11 && memcmp(s, "heapprofile", 11) == 0) {
      size_t plen = len - nlen - 1;
      if (plen == 0 || plen >= sizeof o->heapprofile) {
        snprintf(why, whylen, "heapprofile=: expected a file path of 1 to %zu bytes",
                 sizeof o->heapprofile - 1);
        return false;
      }
      memcpy(o->heapprofile, eq + 1, plen);
      o->heapprofile[plen] = 0;
      s += len;
      if (*s == ',') s++;
      continue;
    }
    if (eq && nlen == 15 && memcmp(s, "heapprofilerate", 15) == 0) {
      if (!parse_uint(eq + 1, len - nlen - 1, int64_t{1} << 40, &v)) {
        snprintf(why, whylen,
                 "heapprofilerate=%.*s: expected a byte count from 0 (off) to 1099511627776 "
                 "(default 524288)",
                 static_cast<int>(len - nlen - 1), eq + 1);
        return false;
      }
      o->heapprofilerate = v;
      s += len;
      if (*s == ',') s++;
      continue;
    }
    if (!eq || !parse_uint(eq + 1, len - nlen - 1, 1 << 30, &v)) {
      snprintf(why, whylen, "'%.*s' is not name=number", static_cast<int>(len), s);
      return false;
    }
    if (nlen == 6 && memcmp(s, "mstats", 6) == 0) {
      o->mstats = v != 0;
    } else if (nlen == 9 && memcmp(s, "scavtrace", 9) == 0) {
      o->scavtrace = v != 0;
    } else if (nlen == 7 && memcmp(s, "gctrace", 7) == 0) {
      o->gctrace = static_cast<int>(v);
    } else if (nlen == 8 && memcmp(s, "gcverify", 8) == 0) {
      o->gcverify = v != 0;
    } else if (nlen == 8 && memcmp(s, "gcstress", 8) == 0) {
      o->gcstress = v;
    } else if (nlen == 8 && memcmp(s, "gcpoison", 8) == 0) {
      o->gcpoison = v != 0;
    } else if (nlen == 10 && memcmp(s, "schedtrace", 10) == 0) {
      o->schedtrace = v;
    } else if (nlen == 15 && memcmp(s, "asyncpreemptoff", 15) == 0) {
      o->asyncpreemptoff = v != 0;
    } else if (nlen == 7 && memcmp(s, "metrics", 7) == 0) {
      o->metrics = v != 0;
    } else if (nlen == 9 && memcmp(s, "poolcheck", 9) == 0) {
      o->poolcheck = v != 0;
    } else if (nlen == 11 && memcmp(s, "escapestats", 11) == 0) {
      o->escapestats = v != 0;
    } else {
      snprintf(why, whylen,
               "unknown setting '%.*s' (known: mstats, scavtrace, gctrace, gcverify, gcstress, "
               "gcpoison, schedtrace, asyncpreemptoff, metrics, heapprofile, heapprofilerate, "
               "poolcheck, escapestats)",
               static_cast<int>(nlen), s);
      return false;
    }
    s += len;
    if (*s == ',') s++;
  }
  return true;
}

// Like GOMEMLIMIT: a byte count with an optional unit (B, KiB, MiB, GiB,
// TiB), or "off". Between 1 MiB and 2^62: a smaller limit could not even
// hold the heap's metadata, so it is a typo, not a wish.
bool parse_memlimit(const char* s, int64_t* bytes, const char** why) {
  if (strcmp(s, "off") == 0) {
    *bytes = 0;
    return true;
  }
  size_t len = strlen(s), digits = 0;
  while (digits < len && s[digits] >= '0' && s[digits] <= '9') digits++;
  static const struct {
    const char* name;
    int shift;
  } units[] = {{"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
  int shift = -1;
  for (const auto& u : units)
    if (strcmp(s + digits, u.name) == 0) shift = u.shift;
  int64_t v = 0;
  *why =
      "expected 'off' or a byte count with an optional unit B, KiB, MiB, GiB or TiB "
      "(at least 1MiB)";
  if (shift < 0 || !parse_uint(s, digits, int64_t{1} << 62, &v)) return false;
  if (v > (int64_t{1} << (62 - shift))) return false;
  v <<= shift;
  if (v < (1 << 20)) return false;
  *bytes = v;
  return true;
}

bool thp_in_play() {
  static int cached = -1;
  int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (v < 0) {
    thpMode m = g_options.thp;
    v = m == thpMode::on || (m == thpMode::system && sys_thp_always());
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
  }
  return v != 0;
}

void options_init() {
  static bool done = false;
  if (done) return;
  done = true;
  if (const char* v = getenv("GORT_SCAVENGE")) {
    const char* why = nullptr;
    if (!parse_scavenge(v, &g_options.scavenge_delay_ns, &why))
      print_err("GORT_SCAVENGE=%s: %s; using the default (500)", v, why);
  }
  if (const char* v = getenv("GORT_THP")) {
    const char* why = nullptr;
    if (!parse_thp(v, &g_options.thp, &why))
      print_err("GORT_THP=%s: %s; using the default (system)", v, why);
  }
  if (const char* v = getenv("GORT_MEMLIMIT")) {
    const char* why = nullptr;
    if (!parse_memlimit(v, &g_options.memlimit, &why))
      print_err("GORT_MEMLIMIT=%s: %s; running without a memory limit", v, why);
  }
  if (const char* v = getenv("GORT_THREAD_CACHE")) {
    const char* why = nullptr;
    if (!parse_memlimit(v, &g_options.thread_cache, &why))
      print_err("GORT_THREAD_CACHE=%s: %s; using the default (32MiB)", v, why);
  }
  if (const char* v = getenv("GORT_DEBUG")) {
    char why[256];
    options o = g_options;
    if (parse_debug(v, &o, why, sizeof why)) {
      g_options = o;
      if (o.mstats || o.metrics) {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
        if (fd >= 0) g_options.mstats_fd = fd;
      }
    } else
      print_err("GORT_DEBUG=%s: %s; ignoring GORT_DEBUG", v, why);
  }
  int64_t rate = g_options.heapprofilerate;
  if (rate < 0) rate = g_options.heapprofile[0] ? kDefaultProfileRate : 0;
  if (g_options.heapprofile[0]) g_options.heapprofile_pid = getpid();
  if (rate > 0) mprof_set_rate(rate);
}

}  // namespace gort::alloc

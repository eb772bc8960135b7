// Prints the VmFlags line of the mapping that holds an 8 MiB heap block and
// the AnonHugePages of that mapping. The scavenger tests run it under
// LD_PRELOAD=libgort.so with GORT_THP unset, on and off: the flags say
// whether gort advised the heap (hg: MADV_HUGEPAGE, nh: MADV_NOHUGEPAGE).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main() {
  const size_t kSize = 8u << 20;
  char* p = static_cast<char*>(malloc(kSize));
  if (!p) return 1;
  memset(p, 1, kSize);
  unsigned long a = reinterpret_cast<unsigned long>(p);
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return 1;
  char line[512];
  bool in = false, found = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') > line + 20) {
      in = lo <= a && a < hi;
    } else if (in && (!strncmp(line, "VmFlags:", 8) || !strncmp(line, "AnonHugePages:", 14))) {
      fputs(line, stdout);
      if (!strncmp(line, "VmFlags:", 8)) found = true;
    }
  }
  fclose(f);
  free(p);
  return found ? 0 : 2;
}

// The allocator test suite: one Boost.Test binary, linked with libgort.a, so
// the test process itself allocates through gort. Suites:
//   sizeclasses, options, mheap,     unit tests of the layers
//   fixalloc_suite
//   conformance                      every entry point's contract
//   stress                           threads > cores, cross-thread frees, fork, 1000 threads
//   scavenger                        memory goes back to the OS on its own clock
//   preload                          real programs under LD_PRELOAD, dlopen, early init, bad frees
//   linking                          -lgort shared and static, make install + pkg-config
//   fastpath                         instruction counts of the fast path (callgrind golden)
#define BOOST_TEST_MODULE gort_alloc
#include <boost/test/unit_test.hpp>

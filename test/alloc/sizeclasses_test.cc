// The size-class table: the invariants sizeclasses.h promises and the waste
// bounds docs/alloc.md states.
#include "alloc/sizeclasses.h"

#include <boost/test/unit_test.hpp>

using namespace gort::alloc;

BOOST_AUTO_TEST_SUITE(sizeclasses)

BOOST_AUTO_TEST_CASE(table_is_increasing_and_aligned) {
  BOOST_TEST(class_to_size[1] == 8u);
  BOOST_TEST(class_to_size[kNumSizeClasses - 1] == kMaxSmallSize);
  for (int c = 2; c < kNumSizeClasses; c++) {
    BOOST_TEST(class_to_size[c] > class_to_size[c - 1]);
    BOOST_TEST(class_to_size[c] % 16 == 0, "class " << c << " is not 16-byte aligned");
  }
}

BOOST_AUTO_TEST_CASE(every_power_of_two_is_a_class) {
  for (size_t p = 8; p <= kMaxSmallSize; p *= 2) BOOST_TEST(class_to_size[size_to_class(p)] == p);
}

BOOST_AUTO_TEST_CASE(lookup_gives_the_smallest_fitting_class) {
  for (size_t n = 0; n <= kMaxSmallSize; n++) {
    uint32_t c = size_to_class(n);
    BOOST_REQUIRE(c >= 1 && c < kNumSizeClasses);
    BOOST_REQUIRE(class_to_size[c] >= n);
    if (c > 1) BOOST_REQUIRE(class_to_size[c - 1] < n);
  }
}

BOOST_AUTO_TEST_CASE(span_tail_waste_at_most_one_eighth) {
  for (int c = 1; c < kNumSizeClasses; c++) {
    size_t span = class_to_npages[c] * kPageSize;
    size_t tail = span % class_to_size[c];
    BOOST_TEST(tail * 8 <= span, "class " << c << " wastes " << tail << " of " << span);
    BOOST_TEST(span / class_to_size[c] <= 1024u);
  }
}

BOOST_AUTO_TEST_CASE(internal_waste_bound) {
  // Above 128 bytes no request wastes more than 1/6 of its block (the worst
  // is 15.8%, 4097 B in the 4864 B class; docs/alloc.md); at and below 128
  // the 16-byte grid bounds it.
  for (size_t n = 129; n <= kMaxSmallSize; n++) {
    size_t got = class_to_size[size_to_class(n)];
    BOOST_REQUIRE_MESSAGE((got - n) * 6 <= got, "size " << n << " gets " << got);
  }
  for (size_t n = 9; n <= 128; n++) BOOST_REQUIRE(class_to_size[size_to_class(n)] - n < 16);
}

BOOST_AUTO_TEST_CASE(division_magic_is_exact) {
  for (int c = 1; c < kNumSizeClasses; c++) {
    uint32_t size = class_to_size[c];
    uint32_t mul = div_mul_for(size);
    uint64_t start = ~uint64_t{0} / size + 1;
    size_t span = class_to_npages[c] * kPageSize;
    for (uint64_t off = 0; off < span; off++) {
      BOOST_REQUIRE(((off * mul) >> 32) == off / size);
      BOOST_REQUIRE((off * start <= start - 1) == (off % size == 0));
    }
  }
}

BOOST_AUTO_TEST_CASE(object_start_check_is_exact) {
  // free()'s one-compare check accepts exactly the starts of a span's objects.
  for (int c = 1; c < kNumSizeClasses; c++) {
    uint64_t size = class_to_size[c], span = class_to_npages[c] * kPageSize;
    uint64_t nelems = span / size;
    for (uint64_t off = 0; off < span; off++) {
      bool want = off % size == 0 && off / size < nelems;
      BOOST_REQUIRE_MESSAGE(class_object_start(c, off) == want, "class " << c << " offset " << off);
    }
  }
}

BOOST_AUTO_TEST_CASE(batches_and_cache_slots) {
  for (int c = 1; c < kNumSizeClasses; c++) {
    BOOST_TEST(class_batch(c) >= 2u);
    BOOST_TEST(class_batch(c) <= 32u);
    BOOST_TEST(class_cache_slots(c) >= 2 * class_batch(c));
    BOOST_TEST(class_cache_slots(c) <= 256u);
    BOOST_TEST((class_cache_slots(c) * class_to_size[c] <= 1024u * 1024 ||
                class_cache_slots(c) == 2 * class_batch(c)));
  }
  BOOST_TEST(make_span_class(5, true) == 11);
  BOOST_TEST(span_class_size_class(11) == 5u);
  BOOST_TEST(span_class_noscan(11));
  BOOST_TEST(!span_class_noscan(make_span_class(5, false)));
}

BOOST_AUTO_TEST_SUITE_END()

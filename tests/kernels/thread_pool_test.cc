// tests/kernels/thread_pool_test.cc — ParallelFor covers every index exactly once, whatever
// the thread count, grain and number of calls.
#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace prefixd {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInBoundedRanges) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      for (int64_t grain : {1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int64_t> longest{0};
        pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
          ASSERT_LE(0, begin);
          ASSERT_LT(begin, end);
          ASSERT_LE(end, n);
          int64_t len = end - begin, seen = longest.load();
          while (len > seen && !longest.compare_exchange_weak(seen, len)) {
          }
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << i;
        EXPECT_LE(longest.load(), grain);
      }
    }
  }
}

TEST(ThreadPoolTest, ManyBackToBackCallsAllComplete) {
  ThreadPool pool(3);
  int64_t total = 0;
  for (int call = 0; call < 2000; ++call) {
    std::vector<int64_t> partial(8, 0);
    pool.ParallelFor(8, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) partial[i] = i + call;
    });
    for (int64_t v : partial) total += v;
  }
  // sum over calls of (0 + ... + 7) + 8 * call
  EXPECT_EQ(total, 2000 * 28 + 8 * (1999 * 2000 / 2));
}

}  // namespace
}  // namespace prefixd

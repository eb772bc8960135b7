// A multi-threaded C++ program for the real-program tests: threads build
// maps of strings and vectors, pass them to each other through a queue, and
// print a deterministic digest. Its output must be identical with and
// without LD_PRELOAD=libgort.so.
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int main() {
  const int kThreads = 8;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<std::map<std::string, std::vector<int>>>> q;
  std::vector<unsigned long> digest(kThreads, 0);
  std::vector<std::thread> producers, consumers;
  for (int t = 0; t < kThreads / 2; t++)
    producers.emplace_back([&, t] {
      for (int round = 0; round < 200; round++) {
        auto m = std::make_unique<std::map<std::string, std::vector<int>>>();
        for (int k = 0; k < 100; k++) {
          std::string key = "t" + std::to_string(t) + "-r" + std::to_string(round) + "-k" +
                            std::to_string(k) + std::string(k % 40, 'z');
          (*m)[key].assign(static_cast<size_t>(k % 50), round * k + t);
        }
        std::lock_guard<std::mutex> g(mu);
        q.push_back(std::move(m));
        cv.notify_one();
      }
    });
  int remaining = (kThreads / 2) * 200;
  for (int t = 0; t < kThreads / 2; t++)
    consumers.emplace_back([&, t] {
      for (;;) {
        std::unique_ptr<std::map<std::string, std::vector<int>>> m;
        {
          std::unique_lock<std::mutex> g(mu);
          cv.wait(g, [&] { return !q.empty() || remaining == 0; });
          if (q.empty()) return;
          m = std::move(q.front());
          q.pop_front();
          if (--remaining == 0) cv.notify_all();
        }
        unsigned long h = 0;
        for (auto& [k, v] : *m) {
          for (char c : k) h = h * 131 + static_cast<unsigned char>(c);
          for (int x : v) h = h * 31 + static_cast<unsigned>(x);
        }
        std::lock_guard<std::mutex> g(mu);
        digest[static_cast<size_t>(t)] += h;  // sum: order-independent
      }
    });
  for (auto& t : producers) t.join();
  for (auto& t : consumers) t.join();
  unsigned long total = 0;
  for (auto d : digest) total += d;
  std::printf("digest %lu\n", total);
  return 0;
}

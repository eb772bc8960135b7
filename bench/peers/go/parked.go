// parked: N goroutines (1M at GORT_BENCH_SCALE=4) each parked on a receive
// from one channel; RSS (VmRSS) before spawning and once all are parked gives
// the memory per parked goroutine. Then the channel is closed, which wakes
// them all, and they are joined. Self-check: every goroutine woke exactly
// once, by the close.
package main

import (
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	n := scaled(250000, 1000)
	start := make(chan int)
	var ready, done sync.WaitGroup
	var woke int64

	rss0 := rssBytes()
	t0 := time.Now()
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			ready.Done()
			if _, ok := <-start; !ok {
				atomic.AddInt64(&woke, 1)
			}
			done.Done()
		}()
	}
	ready.Wait()
	park := time.Since(t0)
	rss1 := rssBytes()

	t0 = time.Now()
	close(start)
	done.Wait()
	release := time.Since(t0)

	if got := atomic.LoadInt64(&woke); got != int64(n) {
		fail("parked: %d of %d goroutines woke by the close", got, n)
	}
	result("bytes_per_task", float64(rss1-rss0)/float64(n), "B", "lower")
	result("park_ns", nsPer(park, n), "ns/task", "lower")
	result("release_ns", nsPer(release, n), "ns/task", "lower")
}

// spawn: spawn and join N goroutines that do trivial work (add their index
// to a shared sum), first all at once (burst: N live goroutines), then in
// batches of 100 (steady state: goroutines and stacks are reused). Metrics:
// ns per goroutine for each. Self-check: the sum of all indices.
package main

import (
	"sync"
	"sync/atomic"
	"time"
)

const batch = 100

func main() {
	n := scaled(50000, batch)
	n -= n % batch
	var sum int64
	var wg sync.WaitGroup

	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func(i int64) {
			atomic.AddInt64(&sum, i)
			wg.Done()
		}(int64(i))
	}
	wg.Wait()
	burst := time.Since(t0)

	t0 = time.Now()
	for b := 0; b < n; b += batch {
		wg.Add(batch)
		for i := b; i < b+batch; i++ {
			go func(i int64) {
				atomic.AddInt64(&sum, i)
				wg.Done()
			}(int64(i))
		}
		wg.Wait()
	}
	batched := time.Since(t0)

	want := int64(n) * int64(n-1)
	if got := atomic.LoadInt64(&sum); got != want {
		fail("spawn: sum %d, want %d", got, want)
	}
	result("spawn_ns", nsPer(burst, n), "ns/task", "lower")
	result("spawn_batch_ns", nsPer(batched, n), "ns/task", "lower")
}

// yield: two goroutines call runtime.Gosched in a loop, M times each. Metric:
// wall time per yield (with MAXPROCS 1, the cost of one switch). Self-check:
// both finished their M yields, and with MAXPROCS 1 a yield let the other
// goroutine run (it made progress in between) at least half the time.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	m := scaled(500000, 1000)
	var count [2]int64
	var switched [2]int
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	for k := 0; k < 2; k++ {
		go func(k int) {
			other := &count[1-k]
			for i := 0; i < m; i++ {
				before := atomic.LoadInt64(other)
				runtime.Gosched()
				if atomic.LoadInt64(other) != before {
					switched[k]++
				}
				atomic.AddInt64(&count[k], 1)
			}
			wg.Done()
		}(k)
	}
	wg.Wait()
	el := time.Since(t0)
	if count[0] != int64(m) || count[1] != int64(m) {
		fail("yield: counts %d %d, want %d", count[0], count[1], m)
	}
	if procs() == 1 && switched[0]+switched[1] < m {
		fail("yield: only %d of %d yields switched to the other goroutine", switched[0]+switched[1], 2*m)
	}
	result("switch_ns", nsPer(el, 2*m), "ns/yield", "lower")
}

// poolgetput: the Go peer of bench/workloads/pool_getput.cc. GOMAXPROCS
// goroutines share one sync.Pool; each takes an object, touches it and puts
// it back, M times. Metric: wall time per Get+Put pair on one goroutine.
// Self-check: no object held by two goroutines at once, few objects made.
package main

import (
	"sync"
	"sync/atomic"
	"time"
)

type obj struct {
	inUse int32
	v     int64
}

func main() {
	m := scaled(4000000, 1000)
	p := procs()
	var made, bad int64
	pool := sync.Pool{New: func() interface{} {
		atomic.AddInt64(&made, 1)
		return new(obj)
	}}
	var wg sync.WaitGroup
	t0 := time.Now()
	for k := 0; k < p; k++ {
		wg.Add(1)
		go func() {
			for i := 0; i < m; i++ {
				o := pool.Get().(*obj)
				if atomic.SwapInt32(&o.inUse, 1) != 0 {
					atomic.AddInt64(&bad, 1)
				}
				o.v++
				atomic.StoreInt32(&o.inUse, 0)
				pool.Put(o)
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if bad != 0 {
		fail("poolgetput: %d objects handed to two goroutines at once", bad)
	}
	if made > int64(64*p) {
		fail("poolgetput: made %d objects", made)
	}
	result("getput_ns", nsPer(el, m), "ns/op", "lower")
}

// binary-trees on Go's collector: the same work as
// bench/workloads/gc_binarytrees.cc, single-threaded (one goroutine), default
// GOGC.
package main

import (
	"math"
	"runtime"
	"time"
)

type node struct{ left, right *node }

func bottomUp(depth int) *node {
	if depth <= 0 {
		return &node{}
	}
	return &node{bottomUp(depth - 1), bottomUp(depth - 1)}
}

func (n *node) check() int {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.check() + n.right.check()
}

// treeDepth: 21 at GORT_BENCH_SCALE 4 (a full run), 17 at 1.
func treeDepth() int {
	d := int(math.Round(17 + 2*math.Log2(benchScale())))
	if d < 10 {
		d = 10
	}
	if d > 21 {
		d = 21
	}
	return d
}

func main() {
	minDepth, maxDepth := 4, treeDepth()
	t0 := time.Now()
	if bottomUp(maxDepth+1).check() != (2<<(maxDepth+1))-1 {
		fail("stretch tree check")
	}
	longLived := bottomUp(maxDepth)
	for d := minDepth; d <= maxDepth; d += 2 {
		iterations, sum := 1<<(maxDepth-d+minDepth), 0
		for i := 0; i < iterations; i++ {
			sum += bottomUp(d).check()
		}
		if sum != iterations*((2<<d)-1) {
			fail("short-lived tree check")
		}
	}
	if longLived.check() != (2<<maxDepth)-1 {
		fail("long-lived tree check")
	}
	result("time_ms", ms(time.Since(t0)), "ms", "lower")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	result("cycles", float64(ms.NumGC), "n", "lower")
}

// The soft memory limit on Go's collector: the same work as
// bench/workloads/gc_limit.cc, run with GOMEMLIMIT=256MiB (and GOGC=off for
// "drop"). GC CPU is MemStats.GCCPUFraction.
package main

import (
	"os"
	"runtime"
	"time"
)

const objSize = 1024

var sink []byte

func drop() {
	const peakN, keepN = 150000, 10000
	live := make([][]byte, peakN)
	var peak int64
	for i := 0; i < peakN; i++ {
		p := make([]byte, objSize)
		p[objSize-1] = 1
		live[i] = p
		g := make([]byte, objSize)
		g[0] = 2
		sink = g
		if i%1000 == 0 {
			if r := rssBytes(); r > peak {
				peak = r
			}
		}
	}
	for i := keepN; i < peakN; i++ {
		live[i] = nil
	}
	t0 := time.Now()
	to30 := -1.0
	var at2s int64
	for {
		r := rssBytes()
		el := ms(time.Since(t0))
		if to30 < 0 && r <= 30<<20 {
			to30 = el
		}
		if el >= 2000 {
			at2s = r
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < keepN; i++ {
		if live[i][objSize-1] != 1 {
			fail("lost a live object")
		}
	}
	result("peak_rss_mb", float64(peak)/(1<<20), "MB", "lower")
	result("rss_2s_after_drop_mb", float64(at2s)/(1<<20), "MB", "lower")
	result("ms_to_30mb", to30, "ms", "lower")
}

func over() {
	const liveN = 300000
	live := make([][]byte, liveN)
	t0 := time.Now()
	var peak int64
	x := uint64(88172645463325252)
	for i := 0; i < liveN*4; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p := make([]byte, objSize)
		p[63] = 3
		if i < liveN {
			live[i] = p
		} else {
			live[x%liveN] = p
		}
		if i%4096 == 0 {
			if r := rssBytes(); r > peak {
				peak = r
			}
		}
	}
	wall := time.Since(t0)
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	result("gc_cpu_percent", 100*st.GCCPUFraction, "%", "lower")
	result("peak_rss_mb", float64(peak)/(1<<20), "MB", "lower")
	result("time_ms", ms(wall), "ms", "lower")
	result("cycles", float64(st.NumGC), "n", "lower")
	runtime.KeepAlive(live)
}

func main() {
	mode := "drop"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "drop":
		drop()
	case "over":
		over()
	default:
		fail("usage: gclimit drop|over")
	}
}

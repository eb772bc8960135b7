// livechurn on Go's collector: the same work as
// bench/workloads/gc_livechurn.cc. A table of 1 KiB objects (two pointers
// and a payload) is the live set; each operation replaces a random entry
// with a fresh object linked to another entry. Pauses are the runtime's own
// (MemStats.PauseNs of the cycles during the churn).
package main

import (
	"math"
	"runtime"
	"sort"
	"time"
)

type obj struct {
	next, other *obj
	id          uint64
	payload     [1000]byte
}

// liveBytes: 200 MiB at GORT_BENCH_SCALE 4, 50 MiB at 1.
func liveBytes() int {
	mib := 50 * benchScale()
	if mib > 200 {
		mib = 200
	}
	if mib < 8 {
		mib = 8
	}
	return int(mib * 1024 * 1024)
}

type xorshift uint64

func (s *xorshift) next() uint64 {
	x := uint64(*s)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*s = xorshift(x)
	return x
}

func main() {
	n := liveBytes() / 1024
	ops := 4 * n
	table := make([]*obj, n)
	r := xorshift(88172645463325252)
	for i := range table {
		table[i] = &obj{id: uint64(i)}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	lat := make([]int64, 0, ops)
	var maxOp int64
	t0 := time.Now()
	for i := 0; i < ops; i++ {
		s := time.Now()
		k := r.next() % uint64(n)
		o := &obj{id: uint64(n + i)}
		o.next = table[r.next()%uint64(n)]
		o.payload[0] = byte(i)
		table[k] = o
		d := time.Since(s).Nanoseconds()
		lat = append(lat, d)
		if d > maxOp {
			maxOp = d
		}
	}
	elapsed := time.Since(t0)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	for i, o := range table {
		if o == nil || (o.id != uint64(i) && o.id < uint64(n)) {
			fail("table entry %d corrupt", i)
		}
	}
	cycles := int(after.NumGC - before.NumGC)
	if cycles > 256 {
		cycles = 256
	}
	pauses := make([]float64, 0, cycles)
	for c := 0; c < cycles; c++ {
		idx := (int(after.NumGC) - 1 - c + 256) % 256
		pauses = append(pauses, float64(after.PauseNs[idx]))
	}
	sort.Float64s(pauses)
	q := func(v []float64, f float64) float64 {
		if len(v) == 0 {
			return 0
		}
		i := int(math.Ceil(f*float64(len(v)))) - 1
		if i < 0 {
			i = 0
		}
		return v[i]
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	fl := make([]float64, len(lat))
	for i, v := range lat {
		fl[i] = float64(v)
	}
	result("pause_max_us", q(pauses, 1)/1e3, "us", "lower")
	result("pause_p99_us", q(pauses, 0.99)/1e3, "us", "lower")
	result("op_max_us", float64(maxOp)/1e3, "us", "lower")
	result("op_p999_us", q(fl, 0.999)/1e3, "us", "lower")
	result("time_ms", ms(elapsed), "ms", "lower")
	result("cycles", float64(after.NumGC-before.NumGC), "n", "lower")
}

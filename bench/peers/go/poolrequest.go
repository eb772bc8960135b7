// poolrequest: the Go peer of bench/workloads/pool_request.cc. GOMAXPROCS
// goroutines each handle R requests; a request builds a list of 24-40 small
// objects and a 4-16 KiB buffer, checks them, and one request in 50 keeps its
// list head in a shared 256-slot cache. Variants (os.Args[1]): "gc" (plain
// allocation: Go's escape analysis decides what goes on the heap; the list
// and buffer escape because the list is built through pointers and the
// buffer's size is not constant) and "pool" (sync.Pool for the nodes and the
// buffers). os.Args[2] "noescape": nothing is kept. Figures as the gort side.
package main

import (
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type node struct {
	id      uint64
	next    *node
	payload [4]uint64
}

type buf struct{ b [16384]byte }

const kCache = 256
const kKeepEvery = 50

func mix(x uint64) uint64 { return x*0x9E3779B97F4A7C15 + 1 }

var cache [kCache]atomic.Pointer[node]
var bad int64
var nodePool = sync.Pool{New: func() interface{} { return new(node) }}
var bufPool = sync.Pool{New: func() interface{} { return new(buf) }}

//go:noinline
func request(id uint64, keep, pooled bool) {
	n := 24 + int(id%17)
	blen := 4096 + int(id*7919%12289)
	var head *node
	for k := 0; k < n; k++ {
		var x *node
		if pooled {
			x = nodePool.Get().(*node)
		} else {
			x = new(node)
		}
		x.id = id
		x.payload[0] = mix(id + uint64(k))
		x.next = head
		head = x
	}
	var b []byte
	var pb *buf
	if pooled {
		pb = bufPool.Get().(*buf)
		b = pb.b[:blen]
	} else {
		b = make([]byte, blen)
	}
	for i := range b {
		b[i] = byte(id)
	}
	k := n - 1
	for x := head; x != nil; x = x.next {
		if x.id != id || x.payload[0] != mix(id+uint64(k)) {
			atomic.AddInt64(&bad, 1)
		}
		k--
	}
	if k != -1 || b[blen-1] != byte(id) {
		atomic.AddInt64(&bad, 1)
	}
	if pooled {
		bufPool.Put(pb)
	}
	var kept *node
	if keep {
		kept = head
		head = head.next
		kept.next = nil
	}
	if pooled {
		for head != nil {
			nx := head.next
			head.next = nil
			nodePool.Put(head)
			head = nx
		}
	}
	if kept != nil {
		old := cache[id%kCache].Swap(kept)
		if old != nil && pooled {
			nodePool.Put(old)
		}
	}
}

func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	s := string(data)
	i := 0
	for i < len(s) {
		j := i
		for j < len(s) && s[j] != '\n' {
			j++
		}
		line := s[i:j]
		if len(line) > 6 && line[:6] == "VmHWM:" {
			var kb int64
			for _, c := range line[6:] {
				if c >= '0' && c <= '9' {
					kb = kb*10 + int64(c-'0')
				}
			}
			return kb * 1024
		}
		i = j + 1
	}
	return 0
}

func main() {
	pooled := len(os.Args) > 1 && os.Args[1] == "pool"
	if len(os.Args) > 1 && os.Args[1] != "pool" && os.Args[1] != "gc" {
		fail("poolrequest: unknown variant '%s' (gc, pool)", os.Args[1])
	}
	noescape := len(os.Args) > 2 && os.Args[2] == "noescape"
	r := scaled(100000, 500)
	p := procs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	lat := make([][]uint32, p)
	var wg sync.WaitGroup
	t0 := time.Now()
	for t := 0; t < p; t++ {
		wg.Add(1)
		go func(t int) {
			l := make([]uint32, 0, r)
			for i := 0; i < r; i++ {
				id := uint64(t)<<40 | uint64(i)
				keep := !noescape && i%kKeepEvery == 0
				q0 := time.Now()
				request(id, keep, pooled)
				l = append(l, uint32(time.Since(q0).Nanoseconds()))
			}
			lat[t] = l
			wg.Done()
		}(t)
	}
	wg.Wait()
	el := time.Since(t0)
	runtime.ReadMemStats(&ms1)
	for i := 0; i < kCache; i++ {
		if x := cache[i].Load(); x != nil {
			if x.payload[0] != mix(x.id+uint64(24+x.id%17)-1) {
				bad++
			}
		}
	}
	if bad != 0 {
		fail("poolrequest: %d requests read back wrong data", bad)
	}
	var all []uint32
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	p99 := float64(all[len(all)*99/100])
	result("requests_per_s", float64(r*p)/el.Seconds(), "req/s", "higher")
	result("gc_cycles", float64(ms1.NumGC-ms0.NumGC), "cycles", "lower")
	result("peak_rss_mb", float64(vmHWM())/(1<<20), "MiB", "lower")
	result("p99_us", p99/1000, "us", "lower")
}

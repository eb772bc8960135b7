// iorows: the Go peer of bench/http/io_rows.cc (issue 11's rows): a pipe
// round trip between two goroutines, and fairness between 8 pipe ping-pong
// pairs and 8 busy goroutines over 2 s. Same output lines.
package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "fairness" {
		ar, aw, _ := os.Pipe()
		br, bw, _ := os.Pipe()
		const n = 50000
		go func() {
			c := make([]byte, 1)
			for i := 0; i < n; i++ {
				ar.Read(c)
				bw.Write(c)
			}
		}()
		c := []byte{'x'}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			aw.Write(c)
			if k, _ := br.Read(c); k != 1 {
				os.Exit(1)
			}
		}
		fmt.Printf("roundtrip_ns %.0f\n", float64(time.Since(t0).Nanoseconds())/n)
		return
	}
	const pairs, busyN = 8, 8
	var stop atomic.Bool
	io := make([]int64, 2*pairs)
	busy := make([]int64, busyN)
	gap := make([]float64, 2*pairs+busyN)
	var wg sync.WaitGroup
	for p := 0; p < pairs; p++ {
		ar, aw, _ := os.Pipe()
		br, bw, _ := os.Pipe()
		for side := 0; side < 2; side++ {
			idx := 2*p + side
			r, w := br, aw
			if side == 1 {
				r, w = ar, bw
			}
			wg.Add(1)
			go func(idx, side int, r, w *os.File) {
				defer wg.Done()
				c := []byte{'p'}
				last := time.Now()
				if side == 0 {
					w.Write(c)
				}
				for !stop.Load() {
					if k, _ := r.Read(c); k != 1 {
						break
					}
					io[idx]++
					if g := float64(time.Since(last).Microseconds()) / 1000; g > gap[idx] {
						gap[idx] = g
					}
					last = time.Now()
					w.Write(c)
				}
				w.Close()
			}(idx, side, r, w)
		}
	}
	for i := 0; i < busyN; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			last := time.Now()
			x := 0
			for !stop.Load() {
				for k := 0; k < 20000; k++ {
					x += k
				}
				busy[i]++
				if g := float64(time.Since(last).Microseconds()) / 1000; g > gap[2*pairs+i] {
					gap[2*pairs+i] = g
				}
				last = time.Now()
			}
			_ = x
		}(i)
	}
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	mn := func(xs []int64) int64 {
		m := xs[0]
		for _, x := range xs {
			if x < m {
				m = x
			}
		}
		return m
	}
	mx := func(xs []int64) int64 {
		m := xs[0]
		for _, x := range xs {
			if x > m {
				m = x
			}
		}
		return m
	}
	worst := 0.0
	for _, g := range gap {
		if g > worst {
			worst = g
		}
	}
	fmt.Printf("fairness io_min %d io_max %d busy_min %d busy_max %d worst_gap_ms %.1f\n",
		mn(io), mx(io), mn(busy), mx(busy), worst)
}

// Helpers shared by the Go peer programs (bench/peers/go/*.go): each program
// is built from its own file plus this one (go build -o X name.go common.go),
// uses only the standard library, and prints the harness protocol of
// bench/run.py: `result <metric> <value> <unit> <lower|higher>`.
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// benchScale is GORT_BENCH_SCALE (1 in `make run`, 4 in `make bench`), as
// bench/workloads/workload.h reads it: anything but a positive finite number
// is an error (exit 2).
func benchScale() float64 {
	s, ok := os.LookupEnv("GORT_BENCH_SCALE")
	if !ok {
		return 1
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		fmt.Fprintf(os.Stderr, "workload: bad GORT_BENCH_SCALE=%s\n", s)
		os.Exit(2)
	}
	return v
}

// scaled is base*scale, at least min.
func scaled(base float64, min int) int {
	n := int(base * benchScale())
	if n < min {
		n = min
	}
	return n
}

// rssBytes is VmRSS from /proc/self/status.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail("cannot open /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fs := strings.Fields(line)
			kb, err := strconv.ParseInt(fs[1], 10, 64)
			if err != nil {
				fail("bad VmRSS line %q", line)
			}
			return kb * 1024
		}
	}
	fail("no VmRSS in /proc/self/status")
	return 0
}

func result(metric string, value float64, unit, better string) {
	fmt.Printf("result %s %.6g %s %s\n", metric, value, unit, better)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "workload: "+format+"\n", args...)
	os.Exit(1)
}

func nsPer(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// procs is GOMAXPROCS, the harness's MAXPROCS for the Go peer.
func procs() int { return runtime.GOMAXPROCS(0) }

// pingpong: two goroutines pass a counter back and forth over two unbuffered
// channels, each incrementing it. Metric: ns per round trip. Self-check: the
// final value is 2 * rounds.
package main

import "time"

func main() {
	rounds := scaled(200000, 1000)
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	t0 := time.Now()
	var v int64
	for i := 0; i < rounds; i++ {
		ping <- v + 1
		v = <-pong
	}
	el := time.Since(t0)
	close(ping)
	if _, ok := <-pong; ok {
		fail("pingpong: pong not closed")
	}
	if v != 2*int64(rounds) {
		fail("pingpong: value %d, want %d", v, 2*rounds)
	}
	result("roundtrip_ns", nsPer(el, rounds), "ns/roundtrip", "lower")
}

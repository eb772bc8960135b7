// skynet: a 10-ary tree of goroutines, SIZE leaves (1M at
// GORT_BENCH_SCALE=4); each leaf sends its number to its parent over an
// unbuffered channel, each inner node sums its 10 children and sends the sum
// up. Metric: time in ms. Self-check: the sum is SIZE*(SIZE-1)/2
// (499999500000 for 1M).
package main

import "time"

func skynet(c chan<- int64, num, size int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	sub := size / 10
	for i := int64(0); i < 10; i++ {
		go skynet(rc, num+i*sub, sub)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-rc
	}
	c <- sum
}

func main() {
	// The largest power of 10 not above 250000 * scale: 100000, 1M at scale 4.
	limit := int64(scaled(250000, 10))
	size := int64(10)
	for size*10 <= limit {
		size *= 10
	}
	t0 := time.Now()
	c := make(chan int64)
	go skynet(c, 0, size)
	sum := <-c
	el := time.Since(t0)
	if want := size * (size - 1) / 2; sum != want {
		fail("skynet: sum %d, want %d", sum, want)
	}
	result("time", ms(el), "ms", "lower")
}

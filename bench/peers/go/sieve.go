// sieve: the concurrent prime sieve: a generator goroutine sends 2, 3, 4, ...
// into a chain of filter goroutines joined by unbuffered channels; each prime
// that comes out of the chain adds a filter for its multiples. Metric: time in
// ms to get the first N primes (N = 1000 * scale). Self-check: the last prime
// against a sequential sieve of Eratosthenes.
package main

import "time"

func generate(ch chan<- int) {
	for i := 2; ; i++ {
		ch <- i
	}
}

func filter(in <-chan int, out chan<- int, prime int) {
	for {
		if i := <-in; i%prime != 0 {
			out <- i
		}
	}
}

func nthPrime(n int) int {
	for limit := 64; ; limit *= 2 {
		composite := make([]bool, limit)
		count := 0
		for i := 2; i < limit; i++ {
			if composite[i] {
				continue
			}
			count++
			if count == n {
				return i
			}
			for j := i * i; j < limit; j += i {
				composite[j] = true
			}
		}
	}
}

func main() {
	n := scaled(1000, 10)
	t0 := time.Now()
	ch := make(chan int)
	go generate(ch)
	prime := 0
	for i := 0; i < n; i++ {
		prime = <-ch
		ch1 := make(chan int)
		go filter(ch, ch1, prime)
		ch = ch1
	}
	el := time.Since(t0)
	if want := nthPrime(n); prime != want {
		fail("sieve: prime %d is %d, want %d", n, prime, want)
	}
	result("time", ms(el), "ms", "lower")
}

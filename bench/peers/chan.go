// SPDX-License-Identifier: MIT
// Peer for bench_chan: the same channel workloads with goroutines, ns per
// message, best of 10 after a warm-up round.
//   pingpong unbuffered / buffered1: two goroutines bounce a value over two
//   channels (one message = one hop); stream buffered128: one goroutine sends
//   N values, another receives them; select unbuffered: the ping-pong where
//   the receiver selects over the channel and a quit channel.
// Usage: chan [N]   (N messages per round; default 1,000,000)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// With CHAN_BENCH_CPU=1, times are the process's CPU time (getrusage), as
// bench_chan does with CLOCK_PROCESS_CPUTIME_ID; otherwise wall time.
var cpuClock = os.Getenv("CHAN_BENCH_CPU") == "1"

type stamp struct {
	wall time.Time
	cpu  time.Duration
}

func now() stamp {
	s := stamp{wall: time.Now()}
	if cpuClock {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return s
}

func since(s stamp) time.Duration {
	if cpuClock {
		return now().cpu - s.cpu
	}
	return time.Since(s.wall)
}

func pingpong(capacity int, useSelect bool, n int) time.Duration {
	c1 := make(chan int64, capacity)
	c2 := make(chan int64, capacity)
	quit := make(chan int)
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			var v int64
			if useSelect {
				select {
				case v = <-c1:
				case <-quit:
					return
				}
			} else {
				v = <-c1
			}
			c2 <- v
		}
		close(done)
	}()
	t0 := now()
	for i := 0; i < n; i++ {
		c1 <- int64(i)
		if v := <-c2; v != int64(i) {
			panic("bad value")
		}
	}
	t := since(t0)
	<-done
	return t
}

func stream(n int) time.Duration {
	c := make(chan int64, 128)
	got := make(chan int)
	go func() {
		k := 0
		for range c {
			k++
		}
		got <- k
	}()
	t0 := now()
	for i := 0; i < n; i++ {
		c <- int64(i)
	}
	close(c)
	k := <-got
	t := since(t0)
	if k != n {
		panic("lost values")
	}
	return t
}

func best(rounds int, f func() time.Duration) time.Duration {
	b := time.Duration(1 << 62)
	for r := 0; r < rounds; r++ {
		t := f()
		if r > 0 && t < b {
			b = t
		}
	}
	return b
}

func report(what string, t time.Duration, msgs int, mode string) {
	clock := "wall"
	if cpuClock {
		clock = "cpu"
	}
	fmt.Printf("chan: %.1f ns/msg what=%s n=%d mode=%s clock=%s peer=go GOMAXPROCS=%d\n",
		float64(t.Nanoseconds())/float64(msgs), what, msgs, mode, clock, runtime.GOMAXPROCS(0))
}

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if n < 2 {
		n = 2
	}
	half := n / 2
	report("pingpong", best(11, func() time.Duration { return pingpong(0, false, half) }), 2*half, "unbuffered")
	report("pingpong", best(11, func() time.Duration { return pingpong(1, false, half) }), 2*half, "buffered1")
	report("stream", best(11, func() time.Duration { return stream(n) }), n, "buffered128")
	report("select", best(11, func() time.Duration { return pingpong(0, true, half) }), 2*half, "unbuffered")
}

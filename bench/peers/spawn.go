// SPDX-License-Identifier: MIT
// Peer for bench_spawn and bench_sleepers: goroutines + WaitGroup.
// Usage: spawn N            -> ns per goroutine (spawn, run, finish), best of 3
//        spawn -sleep N MS  -> N goroutines sleeping MS ms: wall time, RSS per goroutine
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-sleep" {
		n, _ := strconv.Atoi(os.Args[2])
		ms, _ := strconv.Atoi(os.Args[3])
		rss0 := rssKiB()
		var wg sync.WaitGroup
		t0 := time.Now()
		var peak int64
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func() {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				wg.Done()
			}()
		}
		time.Sleep(time.Duration(ms/2) * time.Millisecond)
		peak = rssKiB()
		wg.Wait()
		fmt.Printf("sleepers: n=%d sleep_ms=%d wall_s=%.2f rss_per_task_kib=%.2f peer=go GOMAXPROCS=%d\n",
			n, ms, time.Since(t0).Seconds(), float64(peak-rss0)/float64(n), runtime.GOMAXPROCS(0))
		return
	}
	n := 1000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	best := time.Duration(1 << 62)
	for r := 0; r < 3; r++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		if d := time.Since(t0); d < best {
			best = d
		}
	}
	fmt.Printf("spawn: %.1f ns/task n=%d mode=goroutine+WaitGroup peer=go GOMAXPROCS=%d\n",
		float64(best.Nanoseconds())/float64(n), n, runtime.GOMAXPROCS(0))
}

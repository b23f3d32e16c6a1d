// SPDX-License-Identifier: MIT
// Peer for bench_spawn and bench_sleepers: goroutines + WaitGroup.
// Usage: spawn N            -> ns per goroutine (spawn, run, finish), best of 3
//        spawn -sleep N MS  -> N goroutines sleeping MS ms: wall time, RSS per goroutine
//        (read as soon as all N are spawned; alive= says how many had not woken
//        by then, hwm_per_task_kib= is the peak resident set over the run)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func rssKiB() int64 { return statusKiB("VmRSS:") }

func statusKiB(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
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
		var woke int64
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func() {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				atomic.AddInt64(&woke, 1)
				wg.Done()
			}()
		}
		spawned := time.Since(t0).Seconds()
		// Spawning a million can take longer than the sleep: read now, while
		// as many as possible are still asleep.
		rss := rssKiB()
		alive := int64(n) - atomic.LoadInt64(&woke)
		wg.Wait()
		hwm := statusKiB("VmHWM:")
		fmt.Printf("sleepers: n=%d sleep_ms=%d wall_s=%.2f spawn_s=%.2f rss_per_task_kib=%.2f alive=%d hwm_per_task_kib=%.2f peer=go GOMAXPROCS=%d\n",
			n, ms, time.Since(t0).Seconds(), spawned, float64(rss-rss0)/float64(n), alive,
			float64(hwm-rss0)/float64(n), runtime.GOMAXPROCS(0))
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

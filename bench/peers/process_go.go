// SPDX-License-Identifier: MIT
// Peer of bench/bench_process.c: spawn + wait of /bin/true per child with
// exec.Command().Run(), one at a time and 16 goroutines at once; and pipe
// throughput parent -> cat -> parent with io.Copy over exec.Cmd pipes.
// Usage: process-go [N_CHILDREN [MBYTES]]
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const chunk = 65536
const concurrent = 16

func spawnBench(n int64, width int) (time.Duration, error) {
	var next int64
	var failed atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < width; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for atomic.AddInt64(&next, 1) <= n {
				if err := exec.Command("/bin/true").Run(); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	if err, _ := failed.Load().(error); err != nil {
		return d, err
	}
	return d, nil
}

// A reader of total bytes of 'x', chunk bytes at a time.
type source struct{ left int64 }

var block = func() []byte {
	b := make([]byte, chunk)
	for i := range b {
		b[i] = 'x'
	}
	return b
}()

func (s *source) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > chunk {
		n = chunk
	}
	if n > s.left {
		n = s.left
	}
	copy(p, block[:n])
	s.left -= n
	return int(n), nil
}

func pipeBench(total int64) (time.Duration, error) {
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(in, &source{total})
		in.Close()
		done <- err
	}()
	got, err := io.Copy(io.Discard, out)
	d := time.Since(t0)
	if werr := <-done; werr != nil {
		return d, werr
	}
	if err != nil {
		return d, err
	}
	if err := cmd.Wait(); err != nil {
		return d, err
	}
	if got != total {
		return d, fmt.Errorf("got %d of %d bytes", got, total)
	}
	return d, nil
}

func main() {
	n := int64(2000)
	mbytes := int64(1000)
	if len(os.Args) > 1 {
		n, _ = strconv.ParseInt(os.Args[1], 10, 64)
	}
	if len(os.Args) > 2 {
		mbytes, _ = strconv.ParseInt(os.Args[2], 10, 64)
	}
	procs := runtime.GOMAXPROCS(0)
	d, err := spawnBench(n, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("process: %.1f us/child mode=one n=%d peer=go GOMAXPROCS=%d\n",
		float64(d.Microseconds())/float64(n), n, procs)
	d, err = spawnBench(n, concurrent)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("process: %.1f us/child mode=concurrent%d n=%d peer=go GOMAXPROCS=%d\n",
		float64(d.Microseconds())/float64(n), concurrent, n, procs)
	total := mbytes * 1000000 / chunk * chunk
	d, err = pipeBench(total)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("process: %.0f MB/s mode=pipe mbytes=%d chunk=%d peer=go GOMAXPROCS=%d\n",
		float64(total)/1e6/d.Seconds(), mbytes, chunk, procs)
}

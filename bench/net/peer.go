// SPDX-License-Identifier: MIT
// Go peers of the network benchmarks (run with GOMAXPROCS=1):
//
//	peer http PORT   net/http hello world, the same response body as
//	                 examples/http_server (net/http adds its Date header)
//	peer echo PORT   an echo server: one goroutine per connection reading
//	                 into a 16 KiB buffer and writing back what it read
//
// Both bind 127.0.0.1 and raise the soft descriptor limit to the hard one.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
)

var hello = []byte("Hello, World!")

func raiseNofile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: peer http|echo PORT")
		os.Exit(2)
	}
	raiseNofile()
	addr := "127.0.0.1:" + os.Args[2]
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
	fmt.Printf("peer %s: listening on %s\n", os.Args[1], addr)
	switch os.Args[1] {
	case "http":
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "13")
			w.Write(hello)
		})
		err = http.Serve(ln, h)
	case "echo":
		for {
			c, aerr := ln.Accept()
			if aerr != nil {
				err = aerr
				break
			}
			go echo(c)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	fmt.Fprintln(os.Stderr, "peer:", err)
	os.Exit(1)
}

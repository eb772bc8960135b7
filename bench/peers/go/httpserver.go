// httpserver: the Go peer of bench/http/http_server.cc: net/http, keep-alive,
// a small JSON response built from per-request heap objects. Usage:
// httpserver PORT; prints "ready PORT" and serves until killed.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

type item struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

type reply struct {
	ID    int64   `json:"id"`
	Items []*item `json:"items"`
}

func main() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	var ids int64
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id := atomic.AddInt64(&ids, 1)
		rep := &reply{ID: id}
		for i := int64(0); i < 4; i++ {
			rep.Items = append(rep.Items, &item{Name: "item" + strconv.FormatInt(i, 10), Value: id*10 + i})
		}
		b, _ := json.Marshal(rep)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	http.Serve(ln, nil)
}

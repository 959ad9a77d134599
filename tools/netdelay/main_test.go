package main

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// TestHoldsResponses: lines sent through the proxy reach an echo server
// and come back whole, each answer at least the delay after its question.
func TestHoldsResponses(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	const delay = 20 * time.Millisecond
	go func() {
		errc <- run(ctx, []string{"-listen", "127.0.0.1:0", "-target", echo.Addr().String(), "-delay", delay.String()}, ready)
	}()
	addr := <-ready
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, q := range []string{"one\n", "two\n", "three\n"} {
		start := time.Now()
		if _, err := c.Write([]byte(q)); err != nil {
			t.Fatal(err)
		}
		a, err := r.ReadString('\n')
		if err != nil || a != q {
			t.Fatalf("answer %q, %v; want %q", a, err, q)
		}
		if took := time.Since(start); took < delay {
			t.Errorf("%q answered after %s, under the delay of %s", q, took, delay)
		}
	}
	c.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := run(context.Background(), []string{"-delay", "-1ms"}, nil); err == nil {
		t.Error("a negative delay was accepted")
	}
}

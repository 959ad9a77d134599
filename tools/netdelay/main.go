// Command netdelay stands for a network between a client and a server on
// one machine: it forwards TCP connections and holds every chunk the
// server sends for a delay before passing it on, so that each request and
// response costs a round trip of about that delay. Nothing is held on the
// way to the server. docs/performance.md runs herald against PostgreSQL
// through it:
//
//	go run ./tools/netdelay -listen 127.0.0.1:15433 -target 127.0.0.1:15432 -delay 1ms
//
// and points HERALD_DATABASE_URL at the listen address. The delay is what
// time.Sleep gives: on Linux at least the value asked, and not much less
// than a millisecond, whatever is asked.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "netdelay:", err)
		os.Exit(1)
	}
}

// run parses args and forwards until ctx ends. ready, if not nil, gets the
// address it listens on.
func run(ctx context.Context, args []string, ready chan<- string) error {
	fs := flag.NewFlagSet("netdelay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:15433", "address to accept connections on")
	target := fs.String("target", "127.0.0.1:15432", "address to forward them to")
	delay := fs.Duration("delay", time.Millisecond, "how long each chunk from the target is held")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *delay < 0 {
		return fmt.Errorf("-delay %s: must not be negative", *delay)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if ready != nil {
		ready <- ln.Addr().String()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("forwarding", "listen", ln.Addr().String(), "target", *target, "delay", *delay)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			if err := forward(ctx, c, *target, *delay); err != nil {
				log.Warn("connection", "client", c.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// forward joins client to a new connection to target until either side
// closes it or ctx ends.
func forward(ctx context.Context, client net.Conn, target string, delay time.Duration) error {
	defer client.Close()
	server, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	if err != nil {
		return fmt.Errorf("dial %s: %w", target, err)
	}
	defer server.Close()
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		server.Close()
	})
	defer stop()
	done := make(chan error, 2)
	go func() { done <- copyHeld(server, client, 0) }()
	go func() { done <- copyHeld(client, server, delay) }()
	err = <-done
	// One direction ended: close both, so that the other ends too.
	client.Close()
	server.Close()
	<-done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// copyHeld copies src to dst, holding each chunk read for delay.
func copyHeld(dst, src net.Conn, delay time.Duration) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if delay > 0 {
				time.Sleep(delay)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

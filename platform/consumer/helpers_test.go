package consumer_test

import (
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/herald-events/herald/platform/bus"
)

func nopLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type recorder struct {
	mu   sync.Mutex
	msgs []*bus.Message
	err  error
}

func (r *recorder) Publish(_ context.Context, msgs ...*bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Capabilities() bus.Capabilities { return bus.Capabilities{} }
func (r *recorder) Close() error                   { return nil }

var msg = &bus.Message{Topic: "t", Key: []byte("k"), Value: []byte("v"), Partition: 2, Offset: 41}

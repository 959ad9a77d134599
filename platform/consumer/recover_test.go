package consumer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/consumer"
)

func TestRecover(t *testing.T) {
	h := consumer.Recover()(func(context.Context, *bus.Message) error { panic("boom") })
	err := h(context.Background(), msg)
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want a permanent error naming the panic", err)
	}
}

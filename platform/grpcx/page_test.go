package grpcx_test

import (
	"testing"

	"github.com/herald-events/herald/platform/grpcx"
)

func TestPageTokens(t *testing.T) {
	if seq, ok := grpcx.ParsePageToken(grpcx.PageToken(42)); !ok || seq != 42 {
		t.Fatalf("round trip of 42 gave %d, %v", seq, ok)
	}
	if seq, ok := grpcx.ParsePageToken(""); !ok || seq != 0 {
		t.Fatalf("the empty token is the first page; got %d, %v", seq, ok)
	}
	for _, bad := range []string{"42", "c2VxOg", "not base64!", grpcx.PageToken(0), grpcx.PageToken(-3)} {
		if _, ok := grpcx.ParsePageToken(bad); ok {
			t.Errorf("token %q accepted", bad)
		}
	}
}

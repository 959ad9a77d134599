package grpcx_test

import (
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/apperr"
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

func TestParsePage(t *testing.T) {
	size, after, err := grpcx.ParsePage(0, "", 50, "ListThings")
	if err != nil || size != 50 || after != 0 {
		t.Fatalf("no size, no token: %d, %d, %v; want the default 50 from the start", size, after, err)
	}
	size, after, err = grpcx.ParsePage(7, grpcx.PageToken(42), 50, "ListThings")
	if err != nil || size != 7 || after != 42 {
		t.Fatalf("size 7 after 42: got %d, %d, %v", size, after, err)
	}
	_, _, err = grpcx.ParsePage(7, "bogus", 50, "ListThings")
	e, ok := apperr.As(err)
	if !ok || e.Kind != apperr.KindInvalid || len(e.Violations) != 1 ||
		e.Violations[0].Field != "page_token" || !strings.Contains(e.Violations[0].Description, "ListThings") {
		t.Fatalf("a bad token: %v; want one page_token violation naming ListThings", err)
	}
}

package ports_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/domain"
	"github.com/herald-events/herald/services/orders/ports"
)

// listStore holds orders in memory, newest last; an order's cursor is its
// index plus one.
type listStore struct {
	acceptingStore
	orders []*domain.Order
}

func (s *listStore) List(_ context.Context, _ string, cursor int64, limit int) ([]*domain.Order, []int64, error) {
	var (
		out     []*domain.Order
		cursors []int64
	)
	for i := len(s.orders) - 1; i >= 0 && len(out) < limit; i-- {
		if cursor != 0 && int64(i+1) >= cursor {
			continue
		}
		out, cursors = append(out, s.orders[i]), append(cursors, int64(i+1))
	}
	return out, cursors, nil
}

// TestListOrdersPageBytes: 300 of the largest orders a customer can place
// (100 lines, SKUs of 128 four-byte characters) do not fit one response
// under a default client's 4 MB; a page stops before that, says where to go
// on, and the pages together hold every order once.
func TestListOrdersPageBytes(t *testing.T) {
	sku := strings.Repeat("𝄞", domain.MaxIDLength) // 512 bytes
	s := &listStore{}
	for i := range 300 {
		o := &domain.Order{ID: fmt.Sprintf("o-%03d", i), CustomerID: "c", Status: domain.StatusPending}
		for range domain.MaxLines {
			o.Lines = append(o.Lines, domain.Line{SKU: sku, Quantity: 1, UnitPrice: domain.Money{Currency: "EUR", Units: 1}})
		}
		s.orders = append(s.orders, o)
	}
	g := ports.NewGRPC(app.New(s, directWork{}))
	seen := map[string]bool{}
	pages, token := 0, ""
	for {
		resp, err := g.ListOrders(context.Background(), &ordersv1.ListOrdersRequest{PageSize: 300, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if n := proto.Size(resp); n > 2<<20 {
			t.Fatalf("page %d is %d bytes", pages, n)
		}
		if len(resp.GetOrders()) == 0 {
			t.Fatalf("page %d is empty", pages)
		}
		for _, o := range resp.GetOrders() {
			if seen[o.GetOrderId()] {
				t.Fatalf("order %s on two pages", o.GetOrderId())
			}
			seen[o.GetOrderId()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages > 300 {
			t.Fatal("pages never end")
		}
	}
	if len(seen) != 300 || pages < 2 {
		t.Fatalf("%d orders in %d pages, want 300 in several", len(seen), pages)
	}
}

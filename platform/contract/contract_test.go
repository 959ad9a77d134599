package contract_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/platform/contract"
	"github.com/herald-events/herald/platform/grpcx"
)

// TestValidate: a message that keeps its rules passes; one that breaks
// them yields an *Error naming each field and rule; a disabled validator
// passes everything.
func TestValidate(t *testing.T) {
	v, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	good := &inventoryv1.InventoryDeducted{OrderId: "o", Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: 1}}}
	if err := v.Validate(good); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	bad := &inventoryv1.InventoryDeducted{Lines: []*inventoryv1.StockChange{{Sku: "A", Quantity: -50}}}
	ce, ok := contract.As(v.Validate(bad))
	if !ok {
		t.Fatalf("invalid event: %v, want a *contract.Error", v.Validate(bad))
	}
	want := []contract.Violation{{Field: "order_id", Rule: "string.min_len"}, {Field: "lines[0].quantity", Rule: "int32.gt"}}
	if ce.Type != "herald.inventory.v1.InventoryDeducted" || len(ce.Violations) != len(want) {
		t.Fatalf("error %v, want %d violations of %s", ce, len(want), "InventoryDeducted")
	}
	for i, w := range want {
		if got := ce.Violations[i]; got.Field != w.Field || got.Rule != w.Rule || got.Message == "" {
			t.Errorf("violation %d = %+v, want field %s rule %s with a message", i, got, w.Field, w.Rule)
		}
	}
	if err := contract.Disabled().Validate(bad); err != nil {
		t.Fatalf("disabled validator: %v", err)
	}
}

// TestUnaryServerInterceptor: an invalid request never reaches the handler
// and maps (through grpcx.Status) to INVALID_ARGUMENT with the fields; a
// valid one is handled.
func TestUnaryServerInterceptor(t *testing.T) {
	v, err := contract.New()
	if err != nil {
		t.Fatal(err)
	}
	icpt := contract.UnaryServerInterceptor(v)
	called := 0
	handler := func(context.Context, any) (any, error) { called++; return &inventoryv1.SetStockResponse{}, nil }
	info := &grpc.UnaryServerInfo{FullMethod: "/herald.inventory.v1.InventoryService/SetStock"}
	_, err = icpt(context.Background(), &inventoryv1.SetStockRequest{Sku: "", Quantity: -1}, info, handler)
	ae, ok := apperr.As(err)
	if called != 0 || !ok || ae.Kind != apperr.KindInvalid || len(ae.Violations) != 2 ||
		ae.Violations[0].Field != "sku" || ae.Violations[1].Field != "quantity" {
		t.Fatalf("invalid request: handler called %d times, err %v; want 0 and violations of sku, quantity", called, err)
	}
	if c := grpcx.Status(err).Code(); c != codes.InvalidArgument {
		t.Fatalf("status %s, want InvalidArgument", c)
	}
	if _, err := icpt(context.Background(), &inventoryv1.SetStockRequest{Sku: "A", Quantity: 3}, info, handler); err != nil || called != 1 {
		t.Fatalf("valid request: %v, handler called %d times", err, called)
	}
}

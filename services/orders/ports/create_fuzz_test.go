package ports_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/grpcx"
	"github.com/herald-events/herald/services/orders/app"
	"github.com/herald-events/herald/services/orders/domain"
	"github.com/herald-events/herald/services/orders/ports"
)

// acceptingStore takes every order and finds nothing: validation alone decides.
type acceptingStore struct{}

func (acceptingStore) Insert(context.Context, *domain.Order, string) (bool, error) { return true, nil }
func (acceptingStore) Get(context.Context, string) (*domain.Order, error) {
	return nil, nil
}
func (acceptingStore) GetByRequestID(context.Context, string, string) (*domain.Order, string, error) {
	return nil, "", nil
}
func (acceptingStore) Update(context.Context, string, func(*domain.Order) error) (*domain.Order, error) {
	return nil, nil
}
func (acceptingStore) List(context.Context, string, int64, int) ([]*domain.Order, []int64, error) {
	return nil, nil, nil
}

// directWork runs a use case and drops the events it returns.
type directWork struct{}

func (directWork) Do(ctx context.Context, fn func(context.Context) ([]proto.Message, error)) error {
	_, err := fn(ctx)
	return err
}

func (w directWork) DoLocking(ctx context.Context, _ []string, fn func(context.Context) ([]proto.Message, error)) error {
	return w.Do(ctx, fn)
}

// FuzzValidateCreateOrder sends arbitrary CreateOrder requests through the
// gRPC port (ports.GRPC.CreateOrder → app → domain.NewOrder) and maps the
// error as the server does (grpcx.Status). Each request must either create a
// pending order or fail with INVALID_ARGUMENT carrying a BadRequest with at
// least one field violation, every one with a non-empty field path naming a
// request field; nothing may panic.
//
// The items are derived from the arguments: n items (n up to 103, past the
// 100 limit), every item with sku, quantity and price, every second one in
// currency2, and item 1 without a price when currency2 is "-".
//
//	go test -run '^$' -fuzz FuzzValidateCreateOrder -fuzztime 20s ./services/orders/ports
func FuzzValidateCreateOrder(f *testing.F) {
	g := ports.NewGRPC(app.New(acceptingStore{}, directWork{}))
	f.Add("req-1", "c-1", uint8(1), "SKU-1", int32(2), "EUR", int64(12), int32(500_000_000), "EUR")
	f.Add("", "", uint8(0), "", int32(0), "", int64(0), int32(0), "")
	f.Add("req-2", "c-2", uint8(2), "SKU-2", int32(1), "EUR", int64(1), int32(0), "USD")
	f.Add("req-3", "c-3", uint8(101), "SKU-3", int32(10_001), "XXX", int64(-1), int32(1_000_000_000), "-")
	f.Add(strings.Repeat("r", 129), strings.Repeat("c", 129), uint8(3), strings.Repeat("s", 129),
		int32(-5), "eur", int64(1_000_000_001), int32(-1), "EUR")

	ctx := context.Background()
	f.Fuzz(func(t *testing.T, requestID, customerID string, n uint8, sku string, quantity int32,
		currency string, units int64, nanos int32, currency2 string) {
		req := &ordersv1.CreateOrderRequest{RequestId: requestID, CustomerId: customerID}
		for i := range int(n) % 104 {
			it := &ordersv1.LineItem{Sku: sku, Quantity: quantity,
				UnitPrice: &moneyv1.Money{CurrencyCode: currency, Units: units, Nanos: nanos}}
			if i%2 == 1 {
				it.UnitPrice.CurrencyCode = currency2
			}
			if i == 1 && currency2 == "-" {
				it.UnitPrice = nil
			}
			req.Items = append(req.Items, it)
		}
		// Strings that are not UTF-8 never get past the gRPC transport.
		if _, err := proto.Marshal(req); err != nil {
			t.Skip()
		}

		resp, err := g.CreateOrder(ctx, req)
		if err == nil {
			o := resp.GetOrder()
			if o == nil || o.GetOrderId() == "" || o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING ||
				len(o.GetItems()) != len(req.Items) {
				t.Fatalf("accepted, but the order is %v", o)
			}
			return
		}
		st := grpcx.Status(err)
		if st.Code() != codes.InvalidArgument {
			t.Fatalf("code %s, want InvalidArgument: %v", st.Code(), err)
		}
		var violations []*errdetails.BadRequest_FieldViolation
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				violations = append(violations, br.GetFieldViolations()...)
			}
		}
		if len(violations) == 0 {
			t.Fatalf("InvalidArgument without field violations: %v", err)
		}
		for _, v := range violations {
			field := v.GetField()
			if field == "" || !(field == "request_id" || field == "customer_id" || field == "items" || strings.HasPrefix(field, "items[")) {
				t.Fatalf("violation with field path %q (%s)", field, v.GetDescription())
			}
			if v.GetDescription() == "" {
				t.Fatalf("violation of %s without a description", field)
			}
		}
	})
}

package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-events/herald/platform/apperr"
	"github.com/herald-events/herald/services/orders/domain"
)

func eur(units int64, nanos int32) domain.Money {
	return domain.Money{Currency: "EUR", Units: units, Nanos: nanos}
}

func TestTotalCarriesNanos(t *testing.T) {
	o, err := domain.NewOrder("o", "c", "", []domain.Line{
		{SKU: "A", Quantity: 3, UnitPrice: eur(1, 700_000_000)},
		{SKU: "B", Quantity: 1, UnitPrice: eur(0, 900_000_000)},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// 3 × 1.70 + 0.90 = 6.00
	if o.Total != eur(6, 0) {
		t.Fatalf("total = %+v, want EUR 6.0", o.Total)
	}
}

func TestNewOrderViolations(t *testing.T) {
	long := string(make([]byte, domain.MaxIDLength+1))
	// Limits count characters, not bytes: 128 of "é" is 256 bytes.
	wide := strings.Repeat("é", domain.MaxIDLength)
	one := []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(1, 0)}}
	cases := []struct {
		name  string
		cust  string
		req   string
		lines []domain.Line
		want  []string
	}{
		{"valid", "c", "r", []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(1, 0)}}, nil},
		{"128 two-byte characters", wide, wide, []domain.Line{{SKU: wide, Quantity: 1, UnitPrice: eur(1, 0)}}, nil},
		{"129 two-byte characters", wide + "é", "", one, []string{"customer_id"}},
		{"129 two-byte characters in a sku", "c", "", []domain.Line{{SKU: wide + "é", Quantity: 1, UnitPrice: eur(1, 0)}},
			[]string{"items[0].sku"}},
		{"too many items", "c", "", make([]domain.Line, domain.MaxLines+1), []string{"items"}},
		{"long request id", "c", long, []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(1, 0)}}, []string{"request_id"}},
		{"quantity too large", "c", "", []domain.Line{{SKU: "A", Quantity: domain.MaxQuantity + 1, UnitPrice: eur(1, 0)}},
			[]string{"items[0].quantity"}},
		{"price too large", "c", "", []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(domain.MaxUnitPrice+1, 0)}},
			[]string{"items[0].unit_price.units"}},
		{"nanos out of range", "c", "", []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(1, 1_000_000_000)}},
			[]string{"items[0].unit_price.nanos"}},
		{"lower-case currency", "c", "", []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Currency: "eur", Units: 1}}},
			[]string{"items[0].unit_price.currency_code"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := domain.NewOrder("o", tc.cust, tc.req, tc.lines, time.Now())
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			ae, ok := apperr.As(err)
			if !ok || ae.Kind != apperr.KindInvalid {
				t.Fatalf("err = %v, want an invalid-argument error", err)
			}
			for i, f := range tc.want {
				if i >= len(ae.Violations) || ae.Violations[i].Field != f {
					t.Fatalf("violations = %+v, want fields %v first", ae.Violations, tc.want)
				}
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	now := time.Now()
	newOrder := func() *domain.Order {
		o, err := domain.NewOrder("o", "c", "", []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: eur(1, 0)}}, now)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	o := newOrder()
	if !o.Confirm(now) || o.Status != domain.StatusConfirmed {
		t.Fatal("pending order did not confirm")
	}
	if o.Confirm(now) || o.Reject("x", now) {
		t.Fatal("a confirmed order changed on a second answer")
	}
	if changed, err := o.Cancel(now); !changed || err != nil || o.Status != domain.StatusCancelled {
		t.Fatalf("cancel confirmed = %v, %v", changed, err)
	}
	if changed, err := o.Cancel(now); changed || err != nil {
		t.Fatalf("second cancel = %v, %v; want a no-op", changed, err)
	}
	if o.Confirm(now) {
		t.Fatal("a cancelled order was confirmed by a late answer")
	}

	r := newOrder()
	if !r.Reject("INSUFFICIENT_STOCK", now) || r.RejectionReason != "INSUFFICIENT_STOCK" {
		t.Fatal("pending order did not reject with its reason")
	}
	_, err := r.Cancel(now)
	if ae, ok := apperr.As(err); !ok || ae.Kind != apperr.KindFailedPrecondition {
		t.Fatalf("cancel rejected = %v, want FailedPrecondition", err)
	}
}

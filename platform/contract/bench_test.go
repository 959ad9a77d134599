package contract_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	moneyv1 "github.com/herald-events/herald/gen/go/herald/money/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/contract"
)

// BenchmarkValidate is the cost of the check alone: one OrderCreated with
// three lines (string lengths, ranges, a required timestamp, CEL rules on
// each price and one across the lines), valid and breaking two rules.
//
//	go test -run '^$' -bench Validate -benchmem ./platform/contract/
func BenchmarkValidate(b *testing.B) {
	v, err := contract.New()
	if err != nil {
		b.Fatal(err)
	}
	eur := func(u int64) *moneyv1.Money { return &moneyv1.Money{CurrencyCode: "EUR", Units: u} }
	valid := &ordersv1.OrderCreated{OrderId: "0197a3c2-6f1e-7d4a-9b1c-000000000001", CustomerId: "customer-1", Total: eur(60),
		CreateTime: timestamppb.Now(), Lines: []*ordersv1.OrderLine{
			{Sku: "SKU-RED-SHIRT-M", Quantity: 2, UnitPrice: eur(10)},
			{Sku: "SKU-BLUE-JEANS-32", Quantity: 1, UnitPrice: eur(10)},
			{Sku: "SKU-SOCKS-3PK", Quantity: 3, UnitPrice: eur(10)},
		}}
	invalid := &ordersv1.OrderCreated{OrderId: valid.OrderId, CustomerId: valid.CustomerId, Total: eur(60), Lines: []*ordersv1.OrderLine{
		{Sku: "SKU-RED-SHIRT-M", Quantity: -50, UnitPrice: eur(10)}}}
	for _, c := range []struct {
		name  string
		msg   *ordersv1.OrderCreated
		valid bool
	}{{"valid", valid, true}, {"invalid", invalid, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Validate(c.msg); (err == nil) != c.valid {
					b.Fatalf("Validate = %v", err)
				}
			}
		})
	}
}

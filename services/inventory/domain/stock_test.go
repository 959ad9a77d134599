package domain_test

import (
	"reflect"
	"testing"

	"github.com/herald-events/herald/services/inventory/domain"
)

func TestMergeAddsUpAndSorts(t *testing.T) {
	got := domain.Merge([]domain.Line{{SKU: "B", Quantity: 1}, {SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 3}})
	want := []domain.Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 4}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge = %v, want %v", got, want)
	}
}

func TestCheck(t *testing.T) {
	stock := map[string]int64{"A": 5, "B": 1}
	cases := []struct {
		name  string
		lines []domain.Line
		want  *domain.Failure
	}{
		{"fits", []domain.Line{{SKU: "A", Quantity: 5}, {SKU: "B", Quantity: 1}}, nil},
		{"one line short", []domain.Line{{SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 2}},
			&domain.Failure{Reason: domain.InsufficientStock, SKU: "B", Requested: 2, Available: 1}},
		{"merged lines exceed", domain.Merge([]domain.Line{{SKU: "A", Quantity: 3}, {SKU: "A", Quantity: 3}}),
			&domain.Failure{Reason: domain.InsufficientStock, SKU: "A", Requested: 6, Available: 5}},
		{"unknown", []domain.Line{{SKU: "Z", Quantity: 1}}, &domain.Failure{Reason: domain.UnknownSKU, SKU: "Z", Requested: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := domain.Check(tc.lines, stock); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Check = %+v, want %+v", got, tc.want)
			}
		})
	}
}

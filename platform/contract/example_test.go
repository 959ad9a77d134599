package contract_test

import (
	"fmt"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	"github.com/herald-events/herald/platform/contract"
)

// A message that breaks the rules of its schema yields a *contract.Error
// listing each broken rule with its field path.
func ExampleValidator_Validate() {
	v, err := contract.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	err = v.Validate(&inventoryv1.InventoryDeducted{OrderId: "o-1",
		Lines: []*inventoryv1.StockChange{{Sku: "APPLE", Quantity: -50}}})
	if ce, ok := contract.As(err); ok {
		for _, x := range ce.Violations {
			fmt.Println(x)
		}
	}
	// Output: lines[0].quantity: must be greater than 0 [int32.gt]
}

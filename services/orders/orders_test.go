package orders_test

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/orders"
)

// TestMaxPendingSetting: a value that is not a whole number of 0 or more is
// a configuration error that names the flag, not a panic or a silent
// default.
func TestMaxPendingSetting(t *testing.T) {
	for _, v := range []string{"many", "-1", "1.5"} {
		_, err := orders.Module().Build(context.Background(), module.Deps{Settings: map[string]string{orders.SettingMaxPending: v}})
		if err == nil || !strings.Contains(err.Error(), "--orders-max-pending") {
			t.Errorf("max-pending %q: err %v, want one naming --orders-max-pending", v, err)
		}
	}
}

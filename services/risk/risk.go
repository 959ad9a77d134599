// Package risk is the risk service: it scores every new order for fraud
// risk (the rules are in [github.com/herald-events/herald/services/risk/domain])
// and publishes RiskAssessed on herald.risk.v1.
//
// It has no database: [Module] declares no store, so the platform produces
// the RiskAssessed its handler returns inside the consumer's Kafka
// transaction, which commits it together with the consumed offset. At
// read_committed isolation each OrderCreated record therefore yields
// exactly one RiskAssessed, whatever crashes, rebalances or retries happen
// on the way. That promise is per record: an OrderCreated published twice
// (an outbox relay that crashed between publishing and marking republishes
// with the same ce_id) is two records and is assessed twice. The assessment
// is a pure function of the order, so the two RiskAssessed agree; consumers
// that must act once per order deduplicate on order_id. This relies on
// Kafka transactions, so the service runs on Kafka only.
//
// Records that cannot be read go to herald.orders.v1.dlq like every other
// consumer's, in the same transaction.
package risk

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	riskv1 "github.com/herald-events/herald/gen/go/herald/risk/v1"
	"github.com/herald-events/herald/platform/consumer"
	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/risk/app"
	"github.com/herald-events/herald/services/risk/domain"
)

// Name is the service's name in configuration, logs and ce_source.
const Name = "risk"

// DefaultDenyList is the deny list used unless the deny-list setting is
// set.
func DefaultDenyList() []string { return []string{"mallory", "trudy"} }

// Module declares the risk service. Its setting deny-list
// (--risk-deny-list, HERALD_RISK_DENY_LIST) lists, comma-separated, the
// customer ids that raise the score; unset means [DefaultDenyList], "-"
// means none.
func Module() module.Module {
	return module.Module{
		Name:     Name,
		Consumes: []proto.Message{&ordersv1.OrderCreated{}},
		Produces: []proto.Message{&riskv1.RiskAssessed{}},
		Settings: []module.Setting{{Key: "deny-list",
			Usage: `customer ids that raise the risk score, comma-separated ("-": none; default ` + strings.Join(DefaultDenyList(), ",") + ")"}},
		Build: func(_ context.Context, d module.Deps) (*module.Parts, error) {
			a := app.New(domain.Policy{DenyList: denyList(d.Settings["deny-list"])})
			assess := func(_ context.Context, _ *consumer.Event, msg *ordersv1.OrderCreated) ([]proto.Message, error) {
				return []proto.Message{a.Assess(msg)}, nil
			}
			return &module.Parts{Handlers: []module.Handler{module.On(assess)}}, nil
		},
	}
}

func denyList(setting string) []string {
	switch setting {
	case "":
		return DefaultDenyList()
	case "-":
		return nil
	}
	var out []string
	for id := range strings.SplitSeq(setting, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

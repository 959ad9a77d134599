package server

import (
	"fmt"

	"github.com/herald-events/herald/platform/event"
	"github.com/herald-events/herald/platform/schema"
)

// Registration is one event schema registered by [RegisterSchemas].
type Registration struct {
	Event   string
	Subject string
	ID      int
}

// RegisterSchemas registers the schema of every event the modules
// ([Modules]) consume or produce (and its imports, as references) in the
// registry, as a deploy pipeline does before `herald serve` starts. It is
// idempotent.
func RegisterSchemas(reg RegistryConfig, strategy schema.Strategy, namespace string) ([]Registration, error) {
	if strategy == "" {
		strategy = schema.TopicName
	}
	client, err := schema.NewClient(reg.URL, reg.User, reg.Password)
	if err != nil {
		return nil, err
	}
	codec, err := schema.NewCodec(client, schema.WithStrategy(strategy))
	if err != nil {
		return nil, err
	}
	events, err := moduleEvents(Modules())
	if err != nil {
		return nil, err
	}
	var out []Registration
	for _, md := range events {
		r, _ := event.RouteOf(md)
		topic := event.Namespaced(namespace, r.Topic)
		id, err := codec.Register(topic, md)
		if err != nil {
			return out, fmt.Errorf("registry %s: %w", reg.URL, err)
		}
		out = append(out, Registration{Event: string(md.FullName()), Subject: strategy.Subject(topic, md), ID: id})
	}
	return out, nil
}

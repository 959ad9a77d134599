package observe_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/herald-events/herald/platform/observe"
)

// TestServiceIdentity checks the resource of spans made per service: the
// component's name by default, the operator's OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES service.name over it, and the other resource
// attributes from the identity and the environment.
func TestServiceIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]string // span "a" of service orders, span "b" of the process
	}{
		{"per component", nil, map[string]string{"a": "orders", "b": "herald"}},
		{"OTEL_SERVICE_NAME names every span", map[string]string{"OTEL_SERVICE_NAME": "shop"}, map[string]string{"a": "shop", "b": "shop"}},
		{"service.name in OTEL_RESOURCE_ATTRIBUTES", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=shop%20eu,deployment.environment.name=test"},
			map[string]string{"a": "shop eu", "b": "shop eu"}},
		{"OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES", map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "service.name=y"},
			map[string]string{"a": "x", "b": "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tr, err := observe.NewTracingWith(observe.Identity{Version: "v1.2.3", InstanceID: "host-1"}, func(k string) string { return tc.env[k] }, rec)
			if err != nil {
				t.Fatal(err)
			}
			_, a := tr.Service("orders").Tracer("t").Start(context.Background(), "a")
			a.End()
			_, b := tr.Tracer("t").Start(context.Background(), "b")
			b.End()
			for _, sp := range rec.Ended() {
				res := resource(sp)
				if res["service.name"] != tc.want[sp.Name()] {
					t.Errorf("span %s: service.name %q, want %q", sp.Name(), res["service.name"], tc.want[sp.Name()])
				}
				if res["service.version"] != "v1.2.3" || res["service.instance.id"] != "host-1" || res["service.namespace"] != "herald" {
					t.Errorf("span %s: resource %v", sp.Name(), res)
				}
				if tc.env["OTEL_RESOURCE_ATTRIBUTES"] != "" && tc.env["OTEL_SERVICE_NAME"] == "" && res["deployment.environment.name"] != "test" {
					t.Errorf("span %s: OTEL_RESOURCE_ATTRIBUTES not applied: %v", sp.Name(), res)
				}
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRoutedTracingPicksTheServiceBySpanName(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr, err := observe.NewTracingWith(observe.Identity{}, func(string) string { return "" }, rec)
	if err != nil {
		t.Fatal(err)
	}
	routed := tr.Routed(func(span string) string {
		if span == "herald.orders.v1.OrderService/CreateOrder" {
			return "orders"
		}
		return ""
	})
	for _, name := range []string{"herald.orders.v1.OrderService/CreateOrder", "grpc.health.v1.Health/Check"} {
		_, sp := routed.Tracer("grpc").Start(context.Background(), name)
		sp.End()
	}
	got := map[string]string{}
	for _, sp := range rec.Ended() {
		got[sp.Name()] = resource(sp)["service.name"]
	}
	if got["herald.orders.v1.OrderService/CreateOrder"] != "orders" || got["grpc.health.v1.Health/Check"] != "herald" {
		t.Errorf("service names by span: %v", got)
	}
}

func TestMalformedResourceAttributesAreAnError(t *testing.T) {
	_, err := observe.NewTracingWith(observe.Identity{}, func(k string) string {
		if k == "OTEL_RESOURCE_ATTRIBUTES" {
			return "novalue"
		}
		return ""
	})
	if err == nil {
		t.Fatal("OTEL_RESOURCE_ATTRIBUTES=novalue accepted")
	}
}

func resource(sp sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Resource().Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

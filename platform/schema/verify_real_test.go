package schema_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/fault"
	"github.com/herald-events/herald/platform/schema"
)

// TestVerifyOnRealRegistry runs Verify against the registry in
// HERALD_SCHEMA_REGISTRY_URL (Apicurio in the scripts), under a subject of
// its own: ids agree after registration, and deleting the subject is
// drift.
func TestVerifyOnRealRegistry(t *testing.T) {
	url := os.Getenv("HERALD_SCHEMA_REGISTRY_URL")
	if url == "" {
		t.Skip("HERALD_SCHEMA_REGISTRY_URL not set")
	}
	topic := fmt.Sprintf("verify%d.herald.orders.v1", time.Now().UnixNano())
	cl, err := schema.NewClient(url, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := schema.NewCodec(cl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(topic, desc(&ordersv1.OrderCreated{})); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Verify(ctx); err != nil {
		t.Fatalf("Verify after registering = %v", err)
	}
	subject := schema.TopicName.Subject(topic, desc(&ordersv1.OrderCreated{}))
	if _, err := cl.DeleteSubject(subject, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteSubject(subject, true); err != nil {
		t.Fatal(err)
	}
	err = c.Verify(ctx)
	var drift *schema.DriftError
	if !errors.As(err, &drift) || drift.RegistryID != 0 || !fault.IsTransient(err) {
		t.Fatalf("Verify after the subject was deleted = %v; want drift with the subject missing", err)
	}
	if _, err := c.Encode(topic, &ordersv1.OrderCreated{OrderId: "o-1"}); !errors.Is(err, schema.ErrSchemaDrift) {
		t.Fatalf("Encode while drifted = %v", err)
	}
}

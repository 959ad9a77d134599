package consumer

import (
	"fmt"
	"strconv"

	"github.com/herald-events/herald/platform/bus"
	"github.com/herald-events/herald/platform/event"
)

// ErrNoCloudEvents marks a record without a ce_id header that the router
// does not accept: with [Config].RequireCloudEvents, or on a bus whose
// records have no position to derive an id from.
var ErrNoCloudEvents = fmt.Errorf("missing %s header", event.HeaderID)

// DerivedIDPrefix starts the id of an event that arrived without
// CloudEvents headers (see [DerivedID]).
const DerivedIDPrefix = "herald-derived:"

// DerivedID is the id given to a record without CloudEvents headers: its
// topic, partition and offset, which a redelivery of the same record
// repeats, so the inbox still drops it. A producer's own retry writes a new
// record at another offset and so counts as another event.
func DerivedID(topic string, partition int32, offset int64) string {
	return DerivedIDPrefix + topic + "/" + strconv.Itoa(int(partition)) + "@" + strconv.FormatInt(offset, 10)
}

// eventID returns the id of m: its ce_id (or the broker's message id), or,
// for a record from a producer outside herald that sends no CloudEvents
// headers (a Confluent serde in another language, say), the id
// [DerivedID] makes from its position. Its type then comes from the schema
// and message index of its framing (decode reads it) and its time from the
// record's timestamp. With [Config].RequireCloudEvents such a record is a
// permanent failure, as it is on a bus whose records have no position
// (RabbitMQ: no offset; NATS JetStream numbers its stream and Kafka its
// partitions).
func (r *Router) eventID(m *bus.Message) (id string, derived bool, err error) {
	if id := m.MessageID(); id != "" {
		return id, false, nil
	}
	if r.cfg.RequireCloudEvents {
		return "", false, Permanent(fmt.Errorf("message %s: %w (CloudEvents headers are required)", m, ErrNoCloudEvents))
	}
	if r.system != "kafka" && m.Offset <= 0 {
		return "", false, Permanent(fmt.Errorf("message %s: %w, and no position to derive an id from", m, ErrNoCloudEvents))
	}
	return DerivedID(m.Topic, m.Partition, m.Offset), true, nil
}

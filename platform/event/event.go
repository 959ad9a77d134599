// Package event reads the routing declared on event messages and defines the
// CloudEvents Kafka-binding headers that every record carries.
//
// An event is a protobuf message annotated with the herald.options.v1.event
// option. [RouteOf] reads the option at run time, so code that publishes an
// event never names a topic. [Envelope] is an event together with its
// CloudEvents attributes.
package event

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	optionsv1 "github.com/herald-events/herald/gen/go/herald/options/v1"
	"github.com/herald-events/herald/platform/bus"
)

// CloudEvents Kafka protocol binding header names (binary content mode), plus
// the W3C trace context header.
const (
	HeaderID          = bus.HeaderID
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderTime        = "ce_time"
	HeaderSpecVersion = "ce_specversion"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
	HeaderTraceParent = "traceparent"

	// SpecVersion is the CloudEvents version herald writes.
	SpecVersion = "1.0"
	// ContentType describes the record value: a protobuf message in the
	// Confluent Schema Registry framing.
	ContentType = "application/vnd.confluent.protobuf"
)

// ErrNotAnEvent is returned for a message that lacks the event option or
// whose option is incomplete.
var ErrNotAnEvent = errors.New("not an event message")

// Route is where an event goes: its topic and the field that keys it.
type Route struct {
	Topic    string
	KeyField protoreflect.FieldDescriptor
}

// RouteOf reads the event option of a message descriptor. It fails with
// [ErrNotAnEvent] when the option is missing, the topic is empty, or the key
// field is not a top-level singular string field.
func RouteOf(md protoreflect.MessageDescriptor) (Route, error) {
	return RouteOfOptions(md, md.Options())
}

// RouteOfOptions is [RouteOf] with the message's options given separately,
// for descriptors whose options were compiled at run time.
func RouteOfOptions(md protoreflect.MessageDescriptor, opts proto.Message) (Route, error) {
	if opts == nil || !proto.HasExtension(opts, optionsv1.E_Event) {
		return Route{}, fmt.Errorf("%s: %w: no (herald.options.v1.event) option", md.FullName(), ErrNotAnEvent)
	}
	eo, ok := proto.GetExtension(opts, optionsv1.E_Event).(*optionsv1.EventOptions)
	if !ok || eo.GetTopic() == "" {
		return Route{}, fmt.Errorf("%s: %w: event option has no topic", md.FullName(), ErrNotAnEvent)
	}
	fd := md.Fields().ByName(protoreflect.Name(eo.GetKeyField()))
	if fd == nil {
		return Route{}, fmt.Errorf("%s: %w: key field %q does not exist", md.FullName(), ErrNotAnEvent, eo.GetKeyField())
	}
	if fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return Route{}, fmt.Errorf("%s: %w: key field %q is not a singular string", md.FullName(), ErrNotAnEvent, eo.GetKeyField())
	}
	return Route{Topic: eo.GetTopic(), KeyField: fd}, nil
}

// Key returns the partition key of msg, read from the route's key field.
func (r Route) Key(msg proto.Message) string {
	return msg.ProtoReflect().Get(r.KeyField).String()
}

// IsEvent reports whether a message descriptor carries the event option.
func IsEvent(md protoreflect.MessageDescriptor) bool {
	opts := md.Options()
	return opts != nil && proto.HasExtension(opts, optionsv1.E_Event)
}

// Events lists every message with the event option in the files of files
// (for example [protoregistry.GlobalFiles]) whose package starts with
// prefix, checking that each one's route is valid.
//
// The order is fixed: by file path, then by declaration order inside a
// file. [protoregistry.Files] ranges over a map, so without sorting a
// registration loop would hand the schema registry a different order on
// every run, and a registry that numbers schemas as they arrive would give
// the same schemas different ids each time.
func Events(files *protoregistry.Files, prefix protoreflect.FullName) ([]protoreflect.MessageDescriptor, error) {
	var fds []protoreflect.FileDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if prefix == "" || fd.Package() == prefix || hasPrefix(fd.Package(), prefix+".") {
			fds = append(fds, fd)
		}
		return true
	})
	slices.SortFunc(fds, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	var (
		out  []protoreflect.MessageDescriptor
		errs []error
	)
	for _, fd := range fds {
		msgs := fd.Messages()
		for i := range msgs.Len() {
			md := msgs.Get(i)
			if !IsEvent(md) {
				continue
			}
			if _, err := RouteOf(md); err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, md)
		}
	}
	return out, errors.Join(errs...)
}

func hasPrefix(name, prefix protoreflect.FullName) bool {
	return len(name) >= len(prefix) && name[:len(prefix)] == prefix
}

// Envelope is an event with its CloudEvents attributes.
type Envelope struct {
	// ID is unique per event (ce_id); consumers deduplicate on it.
	ID string
	// Source names the producer (ce_source), for example "herald/orders".
	Source string
	// Time is when the event happened (ce_time).
	Time time.Time
	// TraceParent is the W3C traceparent of the causing operation.
	TraceParent string
	// Message is the event itself.
	Message proto.Message
}

// New wraps msg in an envelope with a fresh time-ordered id and the current
// time.
func New(source string, msg proto.Message) (*Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("new event id: %w", err)
	}
	return &Envelope{ID: id.String(), Source: source, Time: time.Now().UTC(), Message: msg}, nil
}

// Type is the CloudEvents type of the envelope: the message's full name.
func (e *Envelope) Type() string {
	return string(e.Message.ProtoReflect().Descriptor().FullName())
}

// Namespaced returns topic inside namespace: "<namespace>.<topic>", or topic
// itself when namespace is empty. A namespace lets several deployments (or
// test runs) share one Kafka cluster, registry and database.
func Namespaced(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "." + name
}

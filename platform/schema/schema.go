// Package schema frames event values in the Confluent Schema Registry wire
// format, using confluent-kafka-go's protobuf serde.
//
// A [Codec] encodes a protobuf message as magic byte 0, a 4-byte schema id,
// the message-index array and the protobuf bytes; it decodes the same framing
// back into the generated Go type. Imports of an event's file are registered
// as their own subjects and referenced. Producers look schemas up instead of
// registering them unless [AutoRegister] is set; [Codec.Register] is what a
// deploy step (or the embedded dev stack) runs to register them.
package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/protobuf"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Strategy names how a subject is derived from a topic and an event type.
type Strategy string

// Subject name strategies, as in Confluent's serializers.
const (
	// TopicName uses "<topic>-value". All events of one topic must then be
	// declared in one .proto file, which becomes the subject's schema.
	TopicName Strategy = "topic"
	// RecordName uses the message's full name.
	RecordName Strategy = "record"
	// TopicRecordName uses "<topic>-<full name>".
	TopicRecordName Strategy = "topic_record"
)

// ParseStrategy parses a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case TopicName, RecordName, TopicRecordName:
		return st, nil
	}
	return "", fmt.Errorf("unknown subject name strategy %q (want topic, record or topic_record)", s)
}

// Subject returns the value subject for an event type on a topic.
func (s Strategy) Subject(topic string, md protoreflect.MessageDescriptor) string {
	switch s {
	case RecordName:
		return string(md.FullName())
	case TopicRecordName:
		return topic + "-" + string(md.FullName())
	default:
		return topic + "-value"
	}
}

// ErrUndecodable marks a value that can never be decoded: bad framing, an
// unknown schema id, or an unknown message type. Retrying it is pointless;
// it belongs in a dead-letter topic.
var ErrUndecodable = errors.New("undecodable value")

// Option configures a [Codec].
type Option func(*Codec)

// WithStrategy sets the subject name strategy. Default [TopicName].
func WithStrategy(s Strategy) Option { return func(c *Codec) { c.strategy = s } }

// AutoRegister lets Encode register schemas it does not find. Default false:
// a production producer should only use schemas a deploy step registered, so
// an unexpected schema fails loudly instead of silently creating a version.
func AutoRegister(on bool) Option { return func(c *Codec) { c.autoRegister = on } }

// WithTypes sets where decoded message types are looked up. Default
// [protoregistry.GlobalTypes].
func WithTypes(t *protoregistry.Types) Option { return func(c *Codec) { c.types = t } }

// Codec encodes and decodes event values. It is safe for concurrent use.
type Codec struct {
	client       schemaregistry.Client
	strategy     Strategy
	autoRegister bool
	types        *protoregistry.Types

	mu     sync.Mutex
	sers   map[protoreflect.FullName]*protobuf.Serializer
	frames map[frameKey][]byte
	deser  *protobuf.Deserializer
}

// frameKey names the framing a (topic, message type) pair encodes with.
type frameKey struct {
	topic string
	name  protoreflect.FullName
}

// NewClient returns a Confluent-API registry client for url, with basic auth
// when user is not empty.
func NewClient(url, user, password string) (schemaregistry.Client, error) {
	cfg := schemaregistry.NewConfig(url)
	if user != "" {
		cfg = schemaregistry.NewConfigWithBasicAuthentication(url, user, password)
	}
	cl, err := schemaregistry.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("schema registry client %s: %w", url, err)
	}
	return cl, nil
}

// NewCodec returns a codec that talks to client.
func NewCodec(client schemaregistry.Client, opts ...Option) (*Codec, error) {
	c := &Codec{
		client:   client,
		strategy: TopicName,
		types:    protoregistry.GlobalTypes,
		sers:     make(map[protoreflect.FullName]*protobuf.Serializer),
		frames:   make(map[frameKey][]byte),
	}
	for _, o := range opts {
		o(c)
	}
	d, err := protobuf.NewDeserializer(client, serde.ValueSerde, protobuf.NewDeserializerConfig())
	if err != nil {
		return nil, fmt.Errorf("protobuf deserializer: %w", err)
	}
	d.ProtoRegistry = c.types
	c.deser = d
	return c, nil
}

// Strategy returns the codec's subject name strategy.
func (c *Codec) Strategy() Strategy { return c.strategy }

// newSerializer makes a serializer for md that registers missing schemas
// when auto is set and only looks them up otherwise.
func (c *Codec) newSerializer(md protoreflect.MessageDescriptor, auto bool) (*protobuf.Serializer, error) {
	conf := protobuf.NewSerializerConfig()
	conf.AutoRegisterSchemas = auto
	conf.CacheSchemas = true
	conf.NormalizeSchemas = false
	s, err := protobuf.NewSerializer(c.client, serde.ValueSerde, conf)
	if err != nil {
		return nil, fmt.Errorf("protobuf serializer for %s: %w", md.FullName(), err)
	}
	strategy := c.strategy
	s.SubjectNameStrategy = func(topic string, _ serde.Type, _ schemaregistry.SchemaInfo) (string, error) {
		return strategy.Subject(topic, md), nil
	}
	return s, nil
}

// serializer returns the cached serializer Encode uses for md.
func (c *Codec) serializer(md protoreflect.MessageDescriptor) (*protobuf.Serializer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sers[md.FullName()]; ok {
		return s, nil
	}
	s, err := c.newSerializer(md, c.autoRegister)
	if err != nil {
		return nil, err
	}
	c.sers[md.FullName()] = s
	return s, nil
}

// Encode frames msg for topic. The first value of each (topic, message
// type) goes through the serde, which looks the schema up (or registers
// it); its framing (magic byte, schema id, message indexes) is then kept,
// and later values are that framing followed by the marshalled message.
// The serde itself would rebuild the schema text for its cache key on
// every call, which dominated the publish path's CPU profile.
func (c *Codec) Encode(topic string, msg proto.Message) ([]byte, error) {
	md := msg.ProtoReflect().Descriptor()
	key := frameKey{topic, md.FullName()}
	c.mu.Lock()
	prefix, ok := c.frames[key]
	c.mu.Unlock()
	if ok {
		out := make([]byte, len(prefix), len(prefix)+proto.Size(msg))
		copy(out, prefix)
		out, err := proto.MarshalOptions{}.MarshalAppend(out, msg)
		if err != nil {
			return nil, fmt.Errorf("encode %s for %s: %w", md.FullName(), topic, err)
		}
		return out, nil
	}
	s, err := c.serializer(md)
	if err != nil {
		return nil, err
	}
	b, err := s.Serialize(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s for %s (subject %s): %w", md.FullName(), topic, c.strategy.Subject(topic, md), err)
	}
	if n, err := framingLen(b); err == nil {
		c.mu.Lock()
		c.frames[key] = bytes.Clone(b[:n])
		c.mu.Unlock()
	}
	return b, nil
}

// framingLen returns the length of the Confluent framing at the start of
// b: magic byte, 4-byte schema id, then the message-index array (a zigzag
// varint count and that many varints; a lone 0 stands for [0]).
func framingLen(b []byte) (int, error) {
	if len(b) < 6 || b[0] != 0 {
		return 0, errors.New("short or unframed value")
	}
	n := 5
	count, read := binary.Varint(b[n:])
	if read <= 0 || count < 0 {
		return 0, errors.New("unreadable message-index array length")
	}
	n += read
	for range count {
		_, read := binary.Varint(b[n:])
		if read <= 0 {
			return 0, errors.New("unreadable message index")
		}
		n += read
	}
	return n, nil
}

// Register registers the schema of msg's file (and, as references, of its
// imports) under the subject for topic, and returns the schema id. It is
// idempotent: registering the same schema again returns the same id.
func (c *Codec) Register(topic string, md protoreflect.MessageDescriptor) (int, error) {
	s, err := c.newSerializer(md, true)
	if err != nil {
		return 0, err
	}
	b, err := s.Serialize(topic, dynamicOrGenerated(c.types, md))
	if err != nil {
		return 0, fmt.Errorf("register %s as %s: %w", md.FullName(), c.strategy.Subject(topic, md), err)
	}
	return frameID(b)
}

// Lookup returns the id under which the schema of md is registered for
// topic, without registering anything; it fails when the subject or the
// schema is missing.
func (c *Codec) Lookup(topic string, md protoreflect.MessageDescriptor) (int, error) {
	s, err := c.newSerializer(md, false)
	if err != nil {
		return 0, err
	}
	b, err := s.Serialize(topic, dynamicOrGenerated(c.types, md))
	if err != nil {
		return 0, fmt.Errorf("look up %s as %s: %w", md.FullName(), c.strategy.Subject(topic, md), err)
	}
	return frameID(b)
}

func frameID(b []byte) (int, error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, errors.New("short or unframed value")
	}
	return int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])), nil
}

func dynamicOrGenerated(types *protoregistry.Types, md protoreflect.MessageDescriptor) proto.Message {
	if mt, err := types.FindMessageByName(md.FullName()); err == nil {
		return mt.New().Interface()
	}
	return nil
}

// Decode reads a framed value into a new message of the type its schema
// names. Values that can never decode wrap [ErrUndecodable]; other errors
// (the registry unreachable) are worth retrying.
func (c *Codec) Decode(topic string, value []byte) (msg proto.Message, err error) {
	if len(value) < 6 || value[0] != 0 {
		return nil, fmt.Errorf("decode %s: %w: not Confluent wire format (%d bytes, magic %#x)", topic, ErrUndecodable, len(value), firstByte(value))
	}
	if err := checkIndexes(value); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %v", topic, ErrUndecodable, err)
	}
	defer func() {
		// The serde indexes message arrays without bounds checks; a
		// corrupt message-index array must not take the consumer down.
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("decode %s: %w: %v", topic, ErrUndecodable, r)
		}
	}()
	v, err := c.deser.Deserialize(topic, value)
	if err != nil {
		if permanent(err) {
			return nil, fmt.Errorf("decode %s: %w: %v", topic, ErrUndecodable, err)
		}
		return nil, fmt.Errorf("decode %s: %w", topic, err)
	}
	m, ok := v.(proto.Message)
	if !ok || m == nil {
		return nil, fmt.Errorf("decode %s: %w: empty value", topic, ErrUndecodable)
	}
	return m, nil
}

// checkIndexes rejects a message-index array whose length cannot fit in
// the bytes that follow it. The serde allocates as many indexes as the
// length claims before reading them, so a corrupt length (a few bytes of a
// poison record) would exhaust memory: a fatal error, not a recoverable
// panic, and the consumer would crash on that record at every restart.
func checkIndexes(value []byte) error {
	rest := value[5:]
	n, read := binary.Varint(rest)
	switch {
	case read <= 0:
		return errors.New("unreadable message-index array length")
	case n < 0:
		return fmt.Errorf("negative message-index array length %d", n)
	case n > int64(len(rest)-read):
		// Every index takes at least one byte.
		return fmt.Errorf("message-index array length %d exceeds the %d bytes that follow", n, len(rest)-read)
	}
	return nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// permanent reports whether a serde error is about the data rather than the
// registry's availability.
func permanent(err error) bool {
	var re *rest.Error
	if errors.As(err, &re) {
		return re.Code >= 40000 && re.Code < 50000
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return false
	}
	var ue *url.Error
	return !errors.As(err, &ue)
}

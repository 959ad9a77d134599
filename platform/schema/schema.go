// Package schema frames event values in the Confluent Schema Registry wire
// format, using confluent-kafka-go's protobuf serde.
//
// A [Codec] encodes a protobuf message as magic byte 0, a 4-byte schema id,
// the message-index array and the protobuf bytes; it decodes the same framing
// back into the generated Go type. Imports of an event's file are registered
// as their own subjects and referenced. Producers look schemas up instead of
// registering them unless [AutoRegister] is set; [Codec.Register] is what a
// deploy step (or the embedded dev stack) runs to register them.
//
// # Ids that cannot drift
//
// A codec keeps the schema id of every (topic, event type) it encoded,
// looked up or registered, and frames later values with it without asking
// the registry again. Those ids are only right while the registry keeps
// them: a registry that lost its state and was filled again may give the
// same schemas other ids, and a cached id may then name another type.
// [Codec.Verify] asks the registry afresh whether each cached id still
// names its schema; on a mismatch the codec refuses to encode (an error
// that is [fault.IsTransient] and matches [ErrSchemaDrift]) and
// [Codec.Err] reports it for readiness, until a later Verify finds every id
// back. [Codec.RunVerifier] verifies periodically and after every
// reconnect to the registry.
//
// The same kept framings serve decoding: a value whose framing (id and
// message indexes) is one the codec resolved itself is read into that Go
// type without the registry, unless the codec has found the ids drifted.
// A process that looked up its events at start (herald serve does) thus
// decodes them while the registry is down; other values need the
// registry, as the serde reads them.
//
// # Errors
//
// An unreachable registry makes Encode, Decode, Lookup and Register fail
// with errors marked [fault.Transient] for "schema registry". A value that
// cannot be decoded is a bad message, wrapping [ErrUndecodable], only when
// the registry is consistent with the codec: if its framing is broken, or
// if the registry still has every id the codec knows. When the registry
// changed under the codec (Verify finds drift, or the registry cannot be
// reached to tell), an unresolvable schema id or a value that does not
// parse with its schema is a transient error: the record is retried, never
// dead-lettered, until an operator restores the registry. The same rule
// covers a decoded type that differs from the record's ce_type header:
// [Codec.Consistent] is what the consumer asks before calling that a bad
// message.
package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/protobuf"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/herald-events/herald/platform/fault"
)

// dependency names the schema registry in transient errors.
const dependency = "schema registry"

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

// WithLogger sets where [Codec.RunVerifier] logs its state changes.
// Default [slog.Default].
func WithLogger(l *slog.Logger) Option { return func(c *Codec) { c.log = l } }

// Codec encodes and decodes event values. It is safe for concurrent use.
type Codec struct {
	client       schemaregistry.Client
	strategy     Strategy
	autoRegister bool

	log *slog.Logger

	mu     sync.Mutex
	sers   map[protoreflect.FullName]*protobuf.Serializer
	frames map[frameKey]framing
	// known maps a framing prefix the codec resolved itself (Encode,
	// Lookup, Register) to its Go type, so Decode reads such values
	// without asking the registry: a process that restarted while the
	// registry is down still decodes its own events.
	known map[string]protoreflect.MessageType
	drift error // non-nil while Verify finds ids that moved
	deser *protobuf.Deserializer

	// contracts gives the serde each event as proto/ declares it, without
	// the options code generation added: that is the schema registered and
	// looked up.
	contracts contracts

	verifier
}

// framing is what a (topic, message type) pair is encoded with.
type framing struct {
	prefix []byte // magic byte, schema id, message indexes
	id     int
	md     protoreflect.MessageDescriptor
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
		sers:     make(map[protoreflect.FullName]*protobuf.Serializer),
		frames:   make(map[frameKey]framing),
		known:    make(map[string]protoreflect.MessageType),
		log:      slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	c.verifier.init(client)
	d, err := protobuf.NewDeserializer(client, serde.ValueSerde, protobuf.NewDeserializerConfig())
	if err != nil {
		return nil, fmt.Errorf("protobuf deserializer: %w", err)
	}
	// Decoded message types are the generated ones linked into the binary.
	d.ProtoRegistry = protoregistry.GlobalTypes
	c.deser = d
	return c, nil
}

// Strategy returns the codec's subject name strategy.
func (c *Codec) Strategy() Strategy { return c.strategy }

// newSerializer makes a serializer for md that registers missing schemas
// when auto is set and only looks them up otherwise.
func (c *Codec) newSerializer(md protoreflect.MessageDescriptor, auto bool) (*protobuf.Serializer, error) {
	return c.newSerializerWith(c.client, md, auto)
}

func (c *Codec) newSerializerWith(client schemaregistry.Client, md protoreflect.MessageDescriptor, auto bool) (*protobuf.Serializer, error) {
	conf := protobuf.NewSerializerConfig()
	conf.AutoRegisterSchemas = auto
	conf.CacheSchemas = true
	conf.NormalizeSchemas = false
	s, err := protobuf.NewSerializer(client, serde.ValueSerde, conf)
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
//
// While [Codec.Verify] finds ids that moved, Encode refuses every value
// with the drift error (see [Codec.Err]). A registry that cannot be
// reached, or that lacks the subject or schema, gives a transient error:
// either way the fix is in the registry, not in the value.
func (c *Codec) Encode(topic string, msg proto.Message) ([]byte, error) {
	md := msg.ProtoReflect().Descriptor()
	key := frameKey{topic, md.FullName()}
	c.mu.Lock()
	f, ok := c.frames[key]
	drift := c.drift
	c.mu.Unlock()
	if drift != nil {
		return nil, fmt.Errorf("encode %s for %s: %w", md.FullName(), topic, drift)
	}
	if ok {
		prefix := f.prefix
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
	contract, err := c.contracts.message(md)
	if err != nil {
		return nil, fmt.Errorf("encode %s for %s: %w", md.FullName(), topic, err)
	}
	b, err := s.Serialize(topic, contract)
	if err != nil {
		err = fmt.Errorf("encode %s for %s (subject %s): %w", md.FullName(), topic, c.strategy.Subject(topic, md), err)
		if !permanent(err) || notFound(err) {
			return nil, c.unreachable(err)
		}
		return nil, err
	}
	n, err := framingLen(b)
	if err != nil {
		return nil, fmt.Errorf("encode %s for %s: %w", md.FullName(), topic, err)
	}
	c.remember(topic, md, b)
	out := make([]byte, n, n+proto.Size(msg))
	copy(out, b[:n])
	out, err = proto.MarshalOptions{}.MarshalAppend(out, msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s for %s: %w", md.FullName(), topic, err)
	}
	return out, nil
}

// Frame frames payload, the marshalled bytes of a message of type name, for
// topic, without decoding it, when the codec already knows the framing of
// that (topic, type) pair from an earlier [Codec.Encode] or
// [Codec.Register]; ok is false when
// it does not, and the caller encodes the message instead. The outbox relay
// publishes stored payloads this way, through [Codec.AppendFrame].
func (c *Codec) Frame(topic string, name protoreflect.FullName, payload []byte) (out []byte, ok bool, err error) {
	return c.AppendFrame(nil, topic, name, payload)
}

// AppendFrame is [Codec.Frame] appending the framed value to dst, so that a
// batch's values can share one buffer. It returns dst grown; the value is
// its tail from len(dst). When ok is false, dst is returned as it was.
func (c *Codec) AppendFrame(dst []byte, topic string, name protoreflect.FullName, payload []byte) (out []byte, ok bool, err error) {
	c.mu.Lock()
	f, ok := c.frames[frameKey{topic, name}]
	drift := c.drift
	c.mu.Unlock()
	if drift != nil {
		return dst, false, fmt.Errorf("encode %s for %s: %w", name, topic, drift)
	}
	if !ok {
		return dst, false, nil
	}
	dst = slices.Grow(dst, len(f.prefix)+len(payload))
	return append(append(dst, f.prefix...), payload...), true, nil
}

// remember keeps the framing at the start of b for (topic, md).
func (c *Codec) remember(topic string, md protoreflect.MessageDescriptor, b []byte) {
	n, err := framingLen(b)
	if err != nil {
		return
	}
	id, err := frameID(b)
	if err != nil {
		return
	}
	mt, _ := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	c.mu.Lock()
	c.frames[frameKey{topic, md.FullName()}] = framing{prefix: bytes.Clone(b[:n]), id: id, md: md}
	if mt != nil {
		c.known[string(b[:n])] = mt
	}
	c.mu.Unlock()
}

// decodeKnown decodes value without the registry when its framing is one
// the codec resolved itself and the registry has not been found to drift
// since; ok is false otherwise (or when the bytes do not parse as that
// type), and the caller asks the registry.
func (c *Codec) decodeKnown(value []byte) (proto.Message, bool) {
	n, err := framingLen(value)
	if err != nil {
		return nil, false
	}
	c.mu.Lock()
	mt, ok := c.known[string(value[:n])]
	drifted := c.drift != nil
	c.mu.Unlock()
	if !ok || drifted {
		return nil, false
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(value[n:], m); err != nil {
		return nil, false
	}
	return m, true
}

// unreachable marks err transient for the registry and wakes the verifier,
// which then watches for the registry's return.
func (c *Codec) unreachable(err error) error {
	c.verifier.nudge()
	return fault.Transient(dependency, err)
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
	contract, err := c.contracts.message(md)
	if err != nil {
		return 0, fmt.Errorf("register %s: %w", md.FullName(), err)
	}
	b, err := s.Serialize(topic, contract)
	if err != nil {
		err = fmt.Errorf("register %s as %s: %w", md.FullName(), c.strategy.Subject(topic, md), err)
		if !permanent(err) {
			return 0, c.unreachable(err)
		}
		return 0, err
	}
	c.remember(topic, md, b)
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
	contract, err := c.contracts.message(md)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", md.FullName(), err)
	}
	b, err := s.Serialize(topic, contract)
	if err != nil {
		err = fmt.Errorf("look up %s as %s: %w", md.FullName(), c.strategy.Subject(topic, md), err)
		if !permanent(err) {
			return 0, c.unreachable(err)
		}
		return 0, err
	}
	c.remember(topic, md, b)
	return frameID(b)
}

func frameID(b []byte) (int, error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, errors.New("short or unframed value")
	}
	return int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])), nil
}

// Decode reads a framed value into a new message of the type its schema
// names. Values that can never decode wrap [ErrUndecodable]; other errors
// are transient: the registry unreachable, or a schema id that does not
// resolve (or a value that does not parse with its schema) while the
// registry is not consistent with the codec (see [Codec.Consistent]).
func (c *Codec) Decode(topic string, value []byte) (msg proto.Message, err error) {
	if len(value) < 6 || value[0] != 0 {
		return nil, fmt.Errorf("decode %s: %w: not Confluent wire format (%d bytes, magic %#x)", topic, ErrUndecodable, len(value), firstByte(value))
	}
	if err := checkIndexes(value); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %v", topic, ErrUndecodable, err)
	}
	if m, ok := c.decodeKnown(value); ok {
		return m, nil
	}
	defer func() {
		// The serde indexes message arrays without bounds checks; a
		// corrupt message-index array must not take the consumer down.
		// A message index past the end of the schema's file panics too,
		// which is also what an id now naming another schema can cause.
		if r := recover(); r != nil {
			msg, err = nil, c.undecodable(topic, fmt.Errorf("%v", r))
		}
	}()
	v, err := c.deser.Deserialize(topic, value)
	if err != nil {
		if permanent(err) {
			return nil, c.undecodable(topic, err)
		}
		return nil, c.unreachable(fmt.Errorf("decode %s: %w", topic, err))
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

// undecodable classifies a value whose schema did not resolve or did not
// parse it: a bad message (wrapping [ErrUndecodable]) when the registry is
// consistent with the codec, a transient error when it is not.
func (c *Codec) undecodable(topic string, cause error) error {
	if err := c.Consistent(); err != nil {
		return fmt.Errorf("decode %s: %v; not treated as a bad message: %w", topic, cause, err)
	}
	return fmt.Errorf("decode %s: %w: %v", topic, ErrUndecodable, cause)
}

// notFound reports whether err is the registry saying a subject, version
// or schema does not exist.
func notFound(err error) bool {
	var re *rest.Error
	return errors.As(err, &re) && re.Code >= 40400 && re.Code < 40500
}

// permanent reports whether a serde error is about the data rather than the
// registry's availability.
func permanent(err error) bool {
	var re *rest.Error
	if errors.As(err, &re) {
		return re.Code >= 40000 && re.Code < 50000
	}
	if fault.IsTransient(err) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return false
	}
	var ue *url.Error
	return !errors.As(err, &ue)
}

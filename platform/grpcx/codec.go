package grpcx

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// decodeFaults is the server codec of [NewServer]: grpc-go's proto codec,
// except that a request it cannot parse (truncated or malformed wire data,
// a string field that is not valid UTF-8) is not an error of the codec.
//
// grpc-go answers an error of the codec's Unmarshal itself, with
// INTERNAL, before any interceptor runs, and logs it nowhere. So the codec
// resets the message, keeps the parse error next to it and reports success;
// the interceptors of [NewServer] look the message up before the handler
// sees it and answer INVALID_ARGUMENT, logged at Warn. The error is taken
// out of the map when the interceptor sees its message.
//
// A call can also end before any interceptor sees its message (a unary
// call whose client sends a second message fails in grpc-go after the
// first was decoded). So decodeFaults is a stats handler too: it notes the
// messages of each call as they arrive and forgets their errors when the
// call ends, whatever happened; the map never outlives its calls.
type decodeFaults struct {
	base   encoding.CodecV2
	faults sync.Map // message pointer → parse error
}

// callFaults are the messages one call received.
type callFaults struct {
	mu   sync.Mutex
	msgs []any
}

type callFaultsKey struct{}

// TagRPC gives each call a list of its faulty messages.
func (c *decodeFaults) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, callFaultsKey{}, &callFaults{})
}

// HandleRPC notes the messages a call receives and, when it ends, forgets
// the parse errors of those.
func (c *decodeFaults) HandleRPC(ctx context.Context, s stats.RPCStats) {
	cf, _ := ctx.Value(callFaultsKey{}).(*callFaults)
	if cf == nil {
		return
	}
	switch s := s.(type) {
	case *stats.InPayload:
		// Every message: grpc-go decodes the check for a second message of
		// a unary call into the first one, after this.
		if s.Payload != nil {
			cf.mu.Lock()
			cf.msgs = append(cf.msgs, s.Payload)
			cf.mu.Unlock()
		}
	case *stats.End:
		cf.mu.Lock()
		for _, m := range cf.msgs {
			c.faults.Delete(m)
		}
		cf.msgs = nil
		cf.mu.Unlock()
	}
}

// TagConn is part of stats.Handler.
func (c *decodeFaults) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn is part of stats.Handler.
func (c *decodeFaults) HandleConn(context.Context, stats.ConnStats) {}

func newDecodeFaults() *decodeFaults {
	return &decodeFaults{base: encoding.GetCodecV2(grpcproto.Name)}
}

// Name is the proto codec's name: the codec serves application/grpc+proto.
func (c *decodeFaults) Name() string { return c.base.Name() }

// Marshal is the proto codec's.
func (c *decodeFaults) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal parses data into v; a parse error is kept for the interceptor.
func (c *decodeFaults) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m)
	c.faults.Store(v, err)
	return nil
}

// take returns and forgets the parse error of req.
func (c *decodeFaults) take(req any) (error, bool) {
	if req == nil {
		return nil, false
	}
	err, ok := c.faults.LoadAndDelete(req)
	if !ok {
		return nil, false
	}
	return err.(error), true
}

// refuse logs a request that could not be parsed and returns its status.
func (c *decodeFaults) refuse(ctx context.Context, log *slog.Logger, method string, err error) error {
	from := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	log.LogAttrs(ctx, slog.LevelWarn, "grpc request not parsed", slog.String("method", method),
		slog.String("peer", from), slog.String("err", clip(err.Error(), maxMessageBytes)))
	return status.Error(codes.InvalidArgument, clip("invalid request message: "+err.Error(), maxMessageBytes))
}

// unary refuses a unary call whose request could not be parsed.
func (c *decodeFaults) unary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err, bad := c.take(req); bad {
			return nil, c.refuse(ctx, log, info.FullMethod, err)
		}
		return handler(ctx, req)
	}
}

// stream refuses a streamed message that could not be parsed.
func (c *decodeFaults) stream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &checkedStream{ServerStream: ss, c: c, log: log, method: info.FullMethod})
	}
}

type checkedStream struct {
	grpc.ServerStream
	c      *decodeFaults
	log    *slog.Logger
	method string
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err, bad := s.c.take(m); bad {
		return s.c.refuse(s.Context(), s.log, s.method, err)
	}
	return nil
}

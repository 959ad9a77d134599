package contract

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// UnaryServerInterceptor validates each request against its rules before
// the handler runs. A request that breaks them fails with the apperr
// invalid-request error of [Error.Invalid], which grpcx.Status turns into
// INVALID_ARGUMENT with google.rpc.BadRequest field violations; the handler
// is not called. Place it inside grpcx's interceptor (grpcx.NewServer's
// options are chained after its own).
func UnaryServerInterceptor(v *Validator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if msg, ok := req.(proto.Message); ok {
			if err := v.Validate(msg); err != nil {
				if ce, ok := As(err); ok {
					return nil, ce.Invalid()
				}
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

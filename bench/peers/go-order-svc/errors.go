package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/common/v1"
)

// rpcError: an answer for the client (status, message, field violations), as
// common/src/err.c err_set_client / err_field_add build them. Anything else a handler
// returns is redacted (err_redact) and logged as "rpc failed".
type rpcError struct {
	code   codes.Code
	msg    string
	fields []*commonv1.FieldViolation
}

func (e *rpcError) Error() string { return e.msg }

func clientErr(code codes.Code, format string, args ...any) *rpcError {
	return &rpcError{code: code, msg: fmt.Sprintf(format, args...)}
}

// violations collects field violations; err() is nil without any.
type violations struct{ list []*commonv1.FieldViolation }

func (v *violations) add(field, format string, args ...any) {
	if len(v.list) < 16 {
		v.list = append(v.list, &commonv1.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &rpcError{code: codes.InvalidArgument, msg: "invalid request", fields: v.list}
}

// upstreamErr: a failure that is not the client's: redacted to its class.
type upstreamErr struct {
	code codes.Code
	err  error
}

func (e *upstreamErr) Error() string { return e.err.Error() }

var errDeadline = clientErr(codes.DeadlineExceeded, "deadline exceeded")

// toStatus: the one translation of a handler's error for the client.
func toStatus(ctx context.Context, method string, err error) error {
	var re *rpcError
	if errors.As(err, &re) {
		if len(re.fields) > 0 {
			b, _ := proto.Marshal(&commonv1.ErrorDetails{FieldViolations: re.fields})
			_ = grpc.SetTrailer(ctx, metadataPair("x-error-details-bin", string(b)))
		}
		return status.Error(re.code, re.msg)
	}
	code, msg := codes.Internal, "internal error"
	var ue *upstreamErr
	switch {
	case errors.As(err, &ue) && ue.code == codes.Unavailable, transient(err) && !errors.Is(err, context.DeadlineExceeded):
		code, msg = codes.Unavailable, "service unavailable, retry later"
	case errors.Is(err, context.DeadlineExceeded):
		code, msg = codes.DeadlineExceeded, "deadline exceeded"
	case errors.Is(err, context.Canceled):
		code, msg = codes.Canceled, "cancelled"
	}
	if code == codes.Internal {
		slog.Error("rpc failed", "method", method, "code", code.String(), "error", err.Error())
	} else {
		slog.Warn("rpc failed", "method", method, "code", code.String(), "error", err.Error())
	}
	return status.Error(code, msg)
}

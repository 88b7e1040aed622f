package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rpcError: an answer for the client (status, message, field violations), as
// common/src/err.c err_set_client / err_field_add build them. Anything else a handler
// returns is redacted (err_redact) and logged as "rpc failed".
type rpcError struct {
	code   codes.Code
	msg    string
	fields []*errdetails.BadRequest_FieldViolation
}

func (e *rpcError) Error() string { return e.msg }

func clientErr(code codes.Code, format string, args ...any) *rpcError {
	return &rpcError{code: code, msg: fmt.Sprintf(format, args...)}
}

// violations collects field violations; err() is nil without any.
type violations struct {
	list []*errdetails.BadRequest_FieldViolation
}

func (v *violations) add(field, format string, args ...any) {
	if len(v.list) < 16 {
		v.list = append(v.list, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
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
func toStatus(method string, err error) error {
	var re *rpcError
	if errors.As(err, &re) {
		// Field violations as gRPC's rich error: a google.rpc.Status with one
		// google.rpc.BadRequest, in grpc-status-details-bin.
		st := status.New(re.code, re.msg)
		if len(re.fields) > 0 {
			if withDetails, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: re.fields}); err == nil {
				st = withDetails
			}
		}
		return st.Err()
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

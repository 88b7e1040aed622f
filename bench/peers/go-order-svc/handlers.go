package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/events/v1"
)

// order-svc's saga steps (services/order/src/order_saga.c): each runs in the
// consumer's transaction, which already holds the event's inbox row.

type sagaAction int

const (
	actNote sagaAction = iota
	actConfirm
	actCancel
)

type sagaStep struct {
	rawID, step, detail  string
	action               sagaAction
	reason, cancelDetail string
	userID               *string
	amount               *int64
}

type sagaEvent struct {
	topic, key, ceID, ceType, traceparent string
	msg                                   proto.Message
}

func matchOrder(ev *sagaEvent, s *sagaStep, o *orderRow) error {
	if s.userID != nil && !strings.EqualFold(*s.userID, o.UserID) {
		return &invalidEvent{fmt.Sprintf("%s: user_id is not the user of order %s", ev.ceType, o.ID)}
	}
	if s.amount != nil && *s.amount != o.TotalCents {
		return &invalidEvent{fmt.Sprintf("%s: %d cents, but order %s totals %d cents", ev.ceType, *s.amount, o.ID, o.TotalCents)}
	}
	return nil
}

func sagaApply(ctx context.Context, tx pgx.Tx, ev *sagaEvent, s *sagaStep) error {
	id := uuidCanon(s.rawID)
	if id == "" {
		return &invalidEvent{ev.ceType + ": order_id is not a uuid"}
	}
	if err := checkEvent(ev.msg); err != nil {
		return err
	}
	done := false
	switch s.action {
	case actConfirm:
		o, err := repoTransition(ctx, tx, id, statusPending, statusConfirmed, nil)
		if err != nil {
			return err
		}
		if o != nil {
			if err := matchOrder(ev, s, o); err != nil {
				return err
			}
			if err := emitConfirmed(ctx, tx, o, ev.traceparent); err != nil {
				return err
			}
			if err := repoTimelineAdd(ctx, tx, o.ID, orderNote{s.step, s.detail}, orderNote{"order_confirmed", ""}); err != nil {
				return err
			}
			slog.Info("order confirmed", "order_id", o.ID, "total_cents", o.TotalCents)
			done = true
		}
	case actCancel:
		var err error
		done, err = sagaCancel(ctx, tx, cancelReq{orderID: id, from: statusPending, reason: s.reason,
			causeStep: s.step, causeDetail: s.detail, detail: s.cancelDetail, traceparent: ev.traceparent})
		if err != nil {
			return err
		}
	}
	if done {
		return nil
	}
	o, err := repoLock(ctx, tx, id)
	if err != nil {
		return err
	}
	if o == nil {
		slog.Debug("event for an unknown order ignored", "order_id", id, "type", ev.ceType)
		return nil
	}
	if err := matchOrder(ev, s, o); err != nil {
		return err
	}
	detail := s.detail
	if s.action != actNote {
		sep := ""
		if detail != "" {
			sep = "; "
		}
		detail = fmt.Sprintf("%s%signored: the order is already %s", s.detail, sep, strings.ToLower(o.Status))
		slog.Info("event no longer applies, ignored", "order_id", o.ID, "type", ev.ceType, "status", o.Status)
	}
	return repoTimelineAdd(ctx, tx, o.ID, orderNote{s.step, detail})
}

// stepOf: the step an event makes, or nil for a type order-svc does not handle.
func stepOf(m proto.Message) *sagaStep {
	switch e := m.(type) {
	case *eventsv1.StockReserved:
		return &sagaStep{rawID: e.OrderId, step: "stock_reserved", detail: "stock reserved for every line",
			action: actNote, userID: &e.UserId, amount: &e.TotalCents}
	case *eventsv1.StockRejected:
		var d string
		switch e.Reason {
		case eventsv1.RejectReason_REJECT_REASON_INSUFFICIENT_STOCK:
			d = fmt.Sprintf("insufficient stock for product %s: requested %d, available %d", e.ProductId, e.Requested, e.Available)
		case eventsv1.RejectReason_REJECT_REASON_UNKNOWN_PRODUCT:
			d = "unknown product " + e.ProductId
		case eventsv1.RejectReason_REJECT_REASON_ORDER_CANCELLED:
			d = "the order was already cancelled: nothing reserved"
		case eventsv1.RejectReason_REJECT_REASON_INVALID_ORDER:
			d = "the order was refused as invalid: nothing reserved"
		default:
			d = "stock could not be reserved"
		}
		return &sagaStep{rawID: e.OrderId, step: "stock_rejected", detail: d, action: actCancel,
			reason: "OUT_OF_STOCK", cancelDetail: "out of stock"}
	case *eventsv1.PaymentCompleted:
		return &sagaStep{rawID: e.OrderId, step: "payment_completed",
			detail: fmt.Sprintf("wallet charged %d cents", e.AmountCents), action: actConfirm,
			userID: &e.UserId, amount: &e.AmountCents}
	case *eventsv1.PaymentFailed:
		var d string
		switch e.Reason {
		case eventsv1.PaymentFailureReason_PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS:
			d = fmt.Sprintf("insufficient funds to pay %d cents", e.AmountCents)
		case eventsv1.PaymentFailureReason_PAYMENT_FAILURE_REASON_UNKNOWN_USER:
			d = "no wallet for the user"
		case eventsv1.PaymentFailureReason_PAYMENT_FAILURE_REASON_ORDER_CANCELLED:
			d = "the order was already cancelled: nothing charged"
		case eventsv1.PaymentFailureReason_PAYMENT_FAILURE_REASON_INVALID_PAYMENT:
			d = "the payment was refused as invalid: nothing charged"
		default:
			d = "the wallet could not pay"
		}
		return &sagaStep{rawID: e.OrderId, step: "payment_failed", detail: d, action: actCancel,
			reason: "PAYMENT_FAILED", cancelDetail: "payment failed"}
	case *eventsv1.StockCommitted:
		return &sagaStep{rawID: e.OrderId, step: "stock_committed", detail: "reserved stock sold", action: actNote}
	case *eventsv1.StockReleased:
		d := "no stock was held"
		switch e.Source {
		case eventsv1.ReleaseSource_RELEASE_SOURCE_RESERVED:
			d = "reserved stock released"
		case eventsv1.ReleaseSource_RELEASE_SOURCE_SOLD:
			d = "sold stock restocked"
		}
		return &sagaStep{rawID: e.OrderId, step: "stock_released", detail: d, action: actNote}
	case *eventsv1.PaymentRefunded:
		return &sagaStep{rawID: e.OrderId, step: "payment_refunded",
			detail: fmt.Sprintf("wallet refunded %d cents", e.AmountCents), action: actNote,
			userID: &e.UserId, amount: &e.AmountCents}
	}
	return nil
}

// routes: ce_type → a new message of that type.
var routes = map[string]func() proto.Message{
	"shop.events.v1.StockReserved":    func() proto.Message { return &eventsv1.StockReserved{} },
	"shop.events.v1.StockRejected":    func() proto.Message { return &eventsv1.StockRejected{} },
	"shop.events.v1.StockCommitted":   func() proto.Message { return &eventsv1.StockCommitted{} },
	"shop.events.v1.StockReleased":    func() proto.Message { return &eventsv1.StockReleased{} },
	"shop.events.v1.PaymentCompleted": func() proto.Message { return &eventsv1.PaymentCompleted{} },
	"shop.events.v1.PaymentFailed":    func() proto.Message { return &eventsv1.PaymentFailed{} },
	"shop.events.v1.PaymentRefunded":  func() proto.Message { return &eventsv1.PaymentRefunded{} },
}

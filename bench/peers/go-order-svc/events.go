package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/events/v1"
)

// The events order-svc produces (services/order/src/order_events.c), enqueued
// through the transactional outbox (common/src/outbox.c outbox_enqueue) with the
// same CloudEvents attributes: ce_id a UUIDv7, ce_type the message's full name,
// ce_source "/shop/order-svc", ce_time now, traceparent when valid.

const (
	topicOrders    = "order.events"
	topicInventory = "inventory.events"
	topicPayments  = "payment.events"
	ceSource       = "/shop/order-svc"
)

func enqueue(ctx context.Context, tx pgx.Tx, topic, key string, m proto.Message, traceparent string) error {
	payload, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	var tp *string
	if traceparentValid(traceparent) {
		tp = &traceparent
	}
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	_, err = tx.Exec(ctx, "INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time,"+
		" traceparent, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		topic, key, newUUID(), string(m.ProtoReflect().Descriptor().FullName()), ceSource, now, tp, payload)
	return err
}

func eventLines(o *orderRow) []*eventsv1.OrderLine {
	out := make([]*eventsv1.OrderLine, len(o.Lines))
	for i, l := range o.Lines {
		out[i] = &eventsv1.OrderLine{ProductId: l.ProductID, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return out
}

func emitCreated(ctx context.Context, tx pgx.Tx, o *orderRow, tp string) error {
	return enqueue(ctx, tx, topicOrders, o.ID, &eventsv1.OrderCreated{OrderId: o.ID, UserId: o.UserID,
		Lines: eventLines(o), TotalCents: o.TotalCents, Currency: o.Currency, CreatedAt: rfc3339us(o.CreatedUs)}, tp)
}

func emitConfirmed(ctx context.Context, tx pgx.Tx, o *orderRow, tp string) error {
	return enqueue(ctx, tx, topicOrders, o.ID, &eventsv1.OrderConfirmed{OrderId: o.ID, UserId: o.UserID,
		Lines: eventLines(o), TotalCents: o.TotalCents, Currency: o.Currency}, tp)
}

func emitCancelled(ctx context.Context, tx pgx.Tx, o *orderRow, reason, from, tp string) error {
	return enqueue(ctx, tx, topicOrders, o.ID, &eventsv1.OrderCancelled{OrderId: o.ID, UserId: o.UserID,
		Reason: reasonValue(reason), Lines: eventLines(o), TotalCents: o.TotalCents, Currency: o.Currency,
		PreviousStatus: statusValue(from)}, tp)
}

// cancelReq: a cancellation as the saga handlers, the sweeper and CancelOrder ask for it.
type cancelReq struct {
	orderID, from, reason  string
	causeStep, causeDetail string
	detail, traceparent    string
}

// sagaCancel: from → CANCELLED in tx (one conditional UPDATE), the cause's and the
// "order_cancelled" timeline rows, OrderCancelled. false if the order was not in from.
func sagaCancel(ctx context.Context, tx pgx.Tx, c cancelReq) (bool, error) {
	reason := c.reason
	o, err := repoTransition(ctx, tx, c.orderID, c.from, statusCancelled, &reason)
	if err != nil || o == nil {
		return false, err
	}
	notes := []orderNote{{"order_cancelled", c.detail}}
	if c.causeStep != "" {
		notes = []orderNote{{c.causeStep, c.causeDetail}, notes[0]}
	}
	if err := repoTimelineAdd(ctx, tx, o.ID, notes...); err != nil {
		return false, err
	}
	if err := emitCancelled(ctx, tx, o, c.reason, c.from, c.traceparent); err != nil {
		return false, err
	}
	slog.Info("order cancelled", "order_id", o.ID, "reason", c.reason, "from", c.from)
	return true, nil
}

// ---- the field rules of the saga events order-svc consumes (common/src/saga_check.c) ----

type invalidEvent struct{ msg string }

func (e *invalidEvent) Error() string { return e.msg }

func invalid(typ, format string, args ...any) error {
	return &invalidEvent{typ + ": " + fmt.Sprintf(format, args...)}
}

func checkUUID(typ, field, v string) error {
	if !uuidValid(v) {
		return invalid(typ, "%s is not a uuid", field)
	}
	return nil
}

func checkCurrency(typ, v string) error {
	if v != "USD" {
		return invalid(typ, "currency is not USD")
	}
	return nil
}

func checkCents(typ, field string, v int64) error {
	if v < 0 {
		return invalid(typ, "%s is %d, below 0", field, v)
	}
	return nil
}

func checkEnum(typ, field string, v protoreflect.Enum) error {
	n := v.Number()
	if n == 0 || v.Descriptor().Values().ByNumber(n) == nil {
		return invalid(typ, "%s is %d, not a %s", field, n, v.Descriptor().Name())
	}
	return nil
}

func checkStockLines(typ string, lines []*eventsv1.StockLine, min int) error {
	if len(lines) < min || len(lines) > 100 {
		return invalid(typ, "%d lines, not %d..100", len(lines), min)
	}
	for i, l := range lines {
		if err := checkUUID(typ, fmt.Sprintf("lines[%d].product_id", i), l.ProductId); err != nil {
			return err
		}
		if l.Quantity < 1 || l.Quantity > 100*1000 {
			return invalid(typ, "lines[%d].quantity is %d, not 1..%d", i, l.Quantity, 100*1000)
		}
	}
	return nil
}

func firstErr(errs ...func() error) error {
	for _, f := range errs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func checkEvent(m proto.Message) error {
	switch e := m.(type) {
	case *eventsv1.StockReserved:
		t := "StockReserved"
		return firstErr(func() error { return checkUUID(t, "order_id", e.OrderId) },
			func() error { return checkUUID(t, "user_id", e.UserId) },
			func() error { return checkCents(t, "total_cents", e.TotalCents) },
			func() error { return checkCurrency(t, e.Currency) })
	case *eventsv1.StockRejected:
		t := "StockRejected"
		if err := firstErr(func() error { return checkUUID(t, "order_id", e.OrderId) },
			func() error { return checkEnum(t, "reason", e.Reason) },
			func() error { return checkCents(t, "available", e.Available) }); err != nil {
			return err
		}
		if e.Reason != eventsv1.RejectReason_REJECT_REASON_INSUFFICIENT_STOCK &&
			e.Reason != eventsv1.RejectReason_REJECT_REASON_UNKNOWN_PRODUCT {
			if e.ProductId != "" || e.Requested != 0 {
				return invalid(t, "names a product for reason %d", e.Reason)
			}
			return nil
		}
		if err := checkUUID(t, "product_id", e.ProductId); err != nil {
			return err
		}
		if e.Requested < 1 || e.Requested > 100*1000 {
			return invalid(t, "requested is %d, not 1..%d", e.Requested, 100*1000)
		}
		return nil
	case *eventsv1.StockCommitted:
		t := "StockCommitted"
		return firstErr(func() error { return checkUUID(t, "order_id", e.OrderId) },
			func() error { return checkStockLines(t, e.Lines, 1) })
	case *eventsv1.StockReleased:
		t := "StockReleased"
		if err := firstErr(func() error { return checkUUID(t, "order_id", e.OrderId) },
			func() error { return checkEnum(t, "source", e.Source) }); err != nil {
			return err
		}
		if e.Source == eventsv1.ReleaseSource_RELEASE_SOURCE_NONE {
			if len(e.Lines) > 0 {
				return invalid(t, "%d lines, not 0 for source NONE", len(e.Lines))
			}
			return nil
		}
		return checkStockLines(t, e.Lines, 1)
	case *eventsv1.PaymentCompleted:
		return checkMoved("PaymentCompleted", e.OrderId, e.UserId, e.AmountCents, e.Currency, e.LedgerEntryId)
	case *eventsv1.PaymentRefunded:
		return checkMoved("PaymentRefunded", e.OrderId, e.UserId, e.AmountCents, e.Currency, e.LedgerEntryId)
	case *eventsv1.PaymentFailed:
		t := "PaymentFailed"
		if err := firstErr(func() error { return checkUUID(t, "order_id", e.OrderId) },
			func() error { return checkEnum(t, "reason", e.Reason) },
			func() error { return checkCents(t, "amount_cents", e.AmountCents) },
			func() error { return checkCurrency(t, e.Currency) }); err != nil {
			return err
		}
		if e.Reason == eventsv1.PaymentFailureReason_PAYMENT_FAILURE_REASON_INVALID_PAYMENT && e.UserId == "" {
			return nil
		}
		return checkUUID(t, "user_id", e.UserId)
	}
	return invalid(string(m.ProtoReflect().Descriptor().FullName()), "is not a saga event")
}

func checkMoved(t, orderID, userID string, amount int64, currency, ledger string) error {
	return firstErr(func() error { return checkUUID(t, "order_id", orderID) },
		func() error { return checkUUID(t, "user_id", userID) },
		func() error { return checkCents(t, "amount_cents", amount) },
		func() error { return checkCurrency(t, currency) },
		func() error { return checkUUID(t, "ledger_entry_id", ledger) })
}

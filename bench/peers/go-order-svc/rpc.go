package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	commonv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/common/v1"
	orderv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/order/v1"
	productv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/product/v1"
)

// shop.order.v1.OrderService as services/order/src/order_rpc.c answers it.

const (
	linesMax        = 100
	quantityMax     = 1000
	limitDefault    = 20
	limitMax        = 100
	pricingMaxMs    = 2000
	idemKeyMax      = 128
	orderTokenKind  = "order.ListOrders"
	statusPending   = "PENDING"
	statusConfirmed = "CONFIRMED"
	statusCancelled = "CANCELLED"
)

type orderServer struct {
	orderv1.UnimplementedOrderServiceServer
	pool    *pgxpool.Pool
	product productv1.ProductServiceClient
	pageKey []byte
	// forwardUser: x-user-* go on to product-svc (plaintext only; security.go).
	forwardUser bool
}

func mdFirst(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

type caller struct {
	userID string
	admin  bool
}

// whoIsCalling: x-user-id is required (UNAUTHENTICATED without it).
func whoIsCalling(ctx context.Context) (caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	id := mdFirst(md, "x-user-id")
	if id == "" {
		return caller{}, clientErr(codes.Unauthenticated, "authentication required")
	}
	return caller{userID: id, admin: mdFirst(md, "x-user-role") == "admin"}, nil
}

func checkDeadline(ctx context.Context) error {
	if ctx.Err() != nil {
		return errDeadline
	}
	return nil
}

func statusValue(s string) commonv1.OrderStatus {
	switch s {
	case statusPending:
		return commonv1.OrderStatus_ORDER_STATUS_PENDING
	case statusConfirmed:
		return commonv1.OrderStatus_ORDER_STATUS_CONFIRMED
	case statusCancelled:
		return commonv1.OrderStatus_ORDER_STATUS_CANCELLED
	}
	return 0
}

func reasonValue(s string) commonv1.CancelReason {
	switch s {
	case "OUT_OF_STOCK":
		return commonv1.CancelReason_CANCEL_REASON_OUT_OF_STOCK
	case "PAYMENT_FAILED":
		return commonv1.CancelReason_CANCEL_REASON_PAYMENT_FAILED
	case "TIMEOUT":
		return commonv1.CancelReason_CANCEL_REASON_TIMEOUT
	case "USER_REQUESTED":
		return commonv1.CancelReason_CANCEL_REASON_USER_REQUESTED
	}
	return 0
}

func toProto(o *orderRow) *orderv1.Order {
	out := &orderv1.Order{
		Id: o.ID, UserId: o.UserID, TotalCents: o.TotalCents, Currency: o.Currency,
		Status: statusValue(o.Status), CancelReason: reasonValue(o.CancelReason),
		CreatedAt: rfc3339us(o.CreatedUs), UpdatedAt: rfc3339us(o.UpdatedUs),
	}
	for _, l := range o.Lines {
		out.Lines = append(out.Lines, &orderv1.OrderLine{ProductId: l.ProductID, Quantity: l.Quantity,
			UnitPriceCents: l.UnitPriceCents, LineTotalCents: int64(l.Quantity) * l.UnitPriceCents})
	}
	for _, t := range o.Timeline {
		out.Timeline = append(out.Timeline, &orderv1.TimelineEntry{Step: t.Step, Status: statusValue(t.Status),
			Detail: t.Detail, At: rfc3339us(t.AtUs)})
	}
	return out
}

// ---- CreateOrder ----

func checkCreate(who caller, req *orderv1.CreateOrderRequest) (*orderRow, error) {
	if !strings.EqualFold(req.UserId, who.userID) {
		return nil, clientErr(codes.PermissionDenied, "orders can only be placed for the caller")
	}
	var v violations
	if !uuidValid(req.UserId) {
		v.add("user_id", "must be a uuid")
	}
	ok := len(req.IdempotencyKey) >= 1 && len(req.IdempotencyKey) <= idemKeyMax
	for i := 0; ok && i < len(req.IdempotencyKey); i++ {
		ok = req.IdempotencyKey[i] >= 0x20 && req.IdempotencyKey[i] < 0x7f
	}
	if !ok {
		v.add("idempotency_key", "must be 1..128 printable ascii characters")
	}
	o := &orderRow{UserID: strings.ToLower(req.UserId)}
	if n := len(req.Lines); n < 1 || n > linesMax {
		v.add("lines", "must hold 1..100 lines")
	} else {
		o.Lines = make([]orderLine, n)
		for i, l := range req.Lines {
			field := fmt.Sprintf("lines[%d].product_id", i)
			if !uuidValid(l.ProductId) {
				v.add(field, "unknown product: not a uuid")
			} else {
				o.Lines[i].ProductID = strings.ToLower(l.ProductId)
				for k := 0; k < i; k++ {
					if o.Lines[k].ProductID == o.Lines[i].ProductID {
						v.add(field, "product listed twice (also lines[%d])", k)
						break
					}
				}
			}
			if l.Quantity < 1 || l.Quantity > quantityMax {
				v.add(fmt.Sprintf("lines[%d].quantity", i), "must be 1..1000")
			}
			o.Lines[i].Quantity = l.Quantity
		}
	}
	return o, v.err()
}

// canon: the lines sorted by product, whose hash decides whether a repeated key is
// the same request.
func canon(o *orderRow) string {
	sorted := append([]orderLine(nil), o.Lines...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ProductID < sorted[j].ProductID })
	var b strings.Builder
	b.WriteString("v1\n")
	for _, l := range sorted {
		fmt.Fprintf(&b, "%s*%d\n", l.ProductID, l.Quantity)
	}
	return b.String()
}

// forward: the metadata sent on to product-svc (rpc_call_forward); x-user-* only
// when user is true (security.forwardUser).
func forward(ctx context.Context, user bool) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	var kv []string
	if v := mdFirst(in, "x-request-id"); v != "" {
		kv = append(kv, "x-request-id", v)
	}
	if tp := mdFirst(in, "traceparent"); traceparentValid(tp) {
		kv = append(kv, "traceparent", traceNextHop(tp))
	}
	for _, k := range []string{"x-user-id", "x-user-role"} {
		if v := mdFirst(in, k); v != "" && user {
			kv = append(kv, k, v)
		}
	}
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
}

// nextTraceparent: for the events a call causes; "" when the caller sent none.
func nextTraceparent(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if tp := mdFirst(md, "traceparent"); traceparentValid(tp) {
		return traceNextHop(tp)
	}
	return ""
}

func (s *orderServer) price(ctx context.Context, o *orderRow) error {
	budget := time.Duration(pricingMaxMs) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) * 3 / 4; left < budget {
			budget = left
		}
	}
	if budget < time.Millisecond {
		return errDeadline
	}
	cctx, cancel := context.WithTimeout(forward(ctx, s.forwardUser), budget)
	defer cancel()
	ids := make([]string, len(o.Lines))
	for i, l := range o.Lines {
		ids[i] = l.ProductID
	}
	resp, err := s.product.BatchGetProducts(cctx, &productv1.BatchGetProductsRequest{ProductIds: ids})
	if err != nil {
		st := status.Convert(err)
		slog.Warn("pricing failed", "error", st.Message(), "code", st.Code().String())
		if st.Code() == codes.DeadlineExceeded && ctx.Err() != nil {
			return errDeadline
		}
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
			return &upstreamErr{codes.Unavailable, fmt.Errorf("product-svc unavailable: %s", st.Message())}
		}
		return fmt.Errorf("product-svc BatchGetProducts: %s: %s", st.Code(), st.Message())
	}
	var v violations
	o.TotalCents, o.Currency = 0, ""
	mixed := false
	for i := range o.Lines {
		var p *productv1.Product
		for _, x := range resp.Products {
			if strings.EqualFold(x.Id, o.Lines[i].ProductID) {
				p = x
				break
			}
		}
		field := fmt.Sprintf("lines[%d].product_id", i)
		if p == nil {
			v.add(field, "unknown product")
			continue
		}
		if !p.Active {
			v.add(field, "product is archived")
			continue
		}
		o.Lines[i].UnitPriceCents = p.PriceCents
		o.TotalCents += p.PriceCents * int64(o.Lines[i].Quantity)
		if o.Currency == "" {
			o.Currency = p.Currency
		} else if o.Currency != p.Currency {
			mixed = true
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	if mixed {
		return clientErr(codes.FailedPrecondition, "the products are priced in different currencies")
	}
	return nil
}

// lookup: the order a used key made (replayed) or ALREADY_EXISTS; nil, nil if unused.
func (s *orderServer) lookup(ctx context.Context, o *orderRow, key, canonical string) (*orderRow, error) {
	id, same, err := repoIdemFind(ctx, s.pool, o.UserID, key, canonical)
	if err != nil || id == "" {
		return nil, err
	}
	if !same {
		e := clientErr(codes.AlreadyExists, "idempotency key already used with other lines")
		e.fields = []*errdetails.BadRequest_FieldViolation{{Field: "idempotency_key", Description: "was already used with other lines"}}
		return nil, e
	}
	return repoGet(ctx, s.pool, id, true)
}

func (s *orderServer) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	resp, err := s.createOrder(ctx, req)
	if err != nil {
		return nil, toStatus("/shop.order.v1.OrderService/CreateOrder", err)
	}
	return resp, nil
}

func (s *orderServer) createOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	who, err := whoIsCalling(ctx)
	if err != nil {
		return nil, err
	}
	o, err := checkCreate(who, req)
	if err != nil {
		return nil, err
	}
	if err := checkDeadline(ctx); err != nil {
		return nil, err
	}
	canonical := canon(o)
	if prev, err := s.lookup(ctx, o, req.IdempotencyKey, canonical); err != nil || prev != nil {
		if err != nil {
			return nil, err
		}
		return &orderv1.CreateOrderResponse{Order: toProto(prev), Replayed: true}, nil
	}
	if err := s.price(ctx, o); err != nil {
		return nil, err
	}
	if err := checkDeadline(ctx); err != nil {
		return nil, err
	}
	o.ID = newUUID()
	tp := nextTraceparent(ctx)
	var claimed bool
	err = inTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if claimed, err = repoCreate(ctx, tx, o, req.IdempotencyKey, canonical); err != nil || !claimed {
			return err
		}
		return emitCreated(ctx, tx, o, tp)
	})
	if err != nil {
		return nil, err
	}
	if !claimed { // a concurrent create with the same key committed first
		prev, err := s.lookup(ctx, o, req.IdempotencyKey, canonical)
		if err != nil {
			return nil, err
		}
		if prev == nil {
			return nil, clientErr(codes.Aborted, "idempotency key contended, retry")
		}
		return &orderv1.CreateOrderResponse{Order: toProto(prev), Replayed: true}, nil
	}
	o.Timeline = []orderStep{{Step: "order_created", Status: statusPending, AtUs: o.CreatedUs}}
	slog.Info("order created", "order_id", o.ID, "user_id", o.UserID, "lines", len(o.Lines), "total_cents", o.TotalCents)
	return &orderv1.CreateOrderResponse{Order: toProto(o)}, nil
}

// ---- GetOrder ----

func (s *orderServer) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	o, err := s.visible(ctx, req.OrderId)
	if err != nil {
		return nil, toStatus("/shop.order.v1.OrderService/GetOrder", err)
	}
	return &orderv1.GetOrderResponse{Order: toProto(o)}, nil
}

func (s *orderServer) visible(ctx context.Context, raw string) (*orderRow, error) {
	who, err := whoIsCalling(ctx)
	if err != nil {
		return nil, err
	}
	id := uuidCanon(raw)
	if id == "" {
		return nil, errNotFound
	}
	if err := checkDeadline(ctx); err != nil {
		return nil, err
	}
	o, err := repoGet(ctx, s.pool, id, true)
	if err != nil {
		return nil, err
	}
	if !who.admin && !strings.EqualFold(o.UserID, who.userID) {
		return nil, errNotFound
	}
	return o, nil
}

// ---- ListOrders ----

func (s *orderServer) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	resp, err := s.listOrders(ctx, req)
	if err != nil {
		return nil, toStatus("/shop.order.v1.OrderService/ListOrders", err)
	}
	return resp, nil
}

func (s *orderServer) listOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	who, err := whoIsCalling(ctx)
	if err != nil {
		return nil, err
	}
	if !who.admin && !strings.EqualFold(req.UserId, who.userID) {
		return nil, clientErr(codes.PermissionDenied, "customers can only list their own orders")
	}
	var v violations
	var q pageQuery
	scope := "*"
	if req.UserId != "" && !uuidValid(req.UserId) {
		v.add("user_id", "must be a uuid, or \"\" for every user")
	} else if req.UserId != "" {
		scope = strings.ToLower(req.UserId)
		q.userID = &scope
	}
	if req.Limit < 0 || req.Limit > limitMax {
		v.add("limit", "must be 0..100")
	}
	q.limit = int(req.Limit)
	if q.limit == 0 {
		q.limit = limitDefault
	}
	if req.PageToken != "" {
		pos, id, st := decodePageToken(s.pageKey, orderTokenKind, scope, req.PageToken)
		switch {
		case st == pageOther:
			v.add("page_token", "was issued for another user_id")
		case st != pageOK || id == "":
			v.add("page_token", "is not a valid page token")
		default:
			q.afterUs, q.afterID = &pos, &id
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := checkDeadline(ctx); err != nil {
		return nil, err
	}
	limit := q.limit
	q.limit++ // one more row tells whether there is a next page
	rows, err := repoList(ctx, s.pool, q)
	if err != nil {
		return nil, err
	}
	resp := &orderv1.ListOrdersResponse{}
	more := len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	for _, o := range rows {
		resp.Orders = append(resp.Orders, toProto(o))
	}
	if more {
		last := rows[limit-1]
		if resp.NextPageToken = encodePageToken(s.pageKey, orderTokenKind, scope, last.CreatedUs, last.ID); resp.NextPageToken == "" {
			return nil, fmt.Errorf("order %s: created_at %d outside page tokens' bounds", last.ID, last.CreatedUs)
		}
	}
	return resp, nil
}

// ---- CancelOrder ----

func (s *orderServer) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	o, err := s.cancelOrder(ctx, req)
	if err != nil {
		return nil, toStatus("/shop.order.v1.OrderService/CancelOrder", err)
	}
	return &orderv1.CancelOrderResponse{Order: toProto(o)}, nil
}

func (s *orderServer) cancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderRow, error) {
	who, err := whoIsCalling(ctx)
	if err != nil {
		return nil, err
	}
	id := uuidCanon(req.OrderId)
	if id == "" {
		return nil, errNotFound
	}
	if err := checkDeadline(ctx); err != nil {
		return nil, err
	}
	tp := nextTraceparent(ctx)
	err = inTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		o, err := repoLock(ctx, tx, id)
		if err != nil {
			return err
		}
		if o == nil || (!who.admin && !strings.EqualFold(o.UserID, who.userID)) {
			return errNotFound
		}
		if !strings.EqualFold(o.UserID, who.userID) {
			return clientErr(codes.PermissionDenied, "only the owner can cancel an order")
		}
		switch o.Status {
		case statusPending:
			return clientErr(codes.FailedPrecondition, "the order is still being processed")
		case statusConfirmed:
			_, err := sagaCancel(ctx, tx, cancelReq{orderID: o.ID, from: statusConfirmed, reason: "USER_REQUESTED",
				detail: "cancelled by the user", traceparent: tp})
			return err
		}
		return nil // already cancelled: unchanged
	})
	if err != nil {
		var re *rpcError
		if !errors.As(err, &re) {
			return nil, err
		}
		return nil, re
	}
	return repoGet(ctx, s.pool, id, true)
}

package main

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// The saga consumer, as common/src/saga.c and saga_batch.c apply events: records go
// to a worker by a hash of (topic, partition), so each partition (each key) is
// applied in order while partitions proceed in parallel; a worker applies up to
// SAGA_BATCH events per transaction (inbox rows and advisory locks in one statement,
// then each handler, one COMMIT); a failing event goes alone after the events before
// it committed, transient failures are retried without limit, others up to 5 times,
// invalid events are dead-lettered at once to <topic>.dlq; offsets are marked once an
// event is settled and committed every second, and synchronously before partitions
// are revoked and at close.
//
// One difference in the plumbing: franz-go's poll hands over a batch of records and
// the poller waits for the workers to settle it before polling again (rebalances are
// held while a batch is in hand, kgo.BlockRebalanceOnPoll), where the C poller feeds
// per-worker queues continuously.

const (
	maxAttempts   = 5
	backoffBaseMs = 100
	backoffMaxMs  = 5000
	consumerGroup = "order-svc"
)

type outcome int

const (
	outPending outcome = iota
	outOK
	outDuplicate
	outIgnored
	outDLQ
	outStopped
)

type item struct {
	rec     *kgo.Record
	ev      sagaEvent
	step    *sagaStep
	out     outcome
	poison  error
	applied outcome
}

type consumer struct {
	cl       *kgo.Client
	dlq      *kgo.Client
	pool     *pgxpool.Pool
	workers  int
	batch    int
	stopping context.Context
	stop     context.CancelFunc
	done     chan struct{}
}

func newConsumer(brokers []string, extra []kgo.Opt, pool *pgxpool.Pool, dlq *kgo.Client, workers, batch int) (*consumer, error) {
	c := &consumer{pool: pool, dlq: dlq, workers: workers, batch: batch, done: make(chan struct{})}
	c.stopping, c.stop = context.WithCancel(context.Background())
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(consumerGroup),
		kgo.ConsumerGroup(consumerGroup),
		kgo.ConsumeTopics(topicInventory, topicPayments),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.FetchMaxPartitionBytes(1 << 20),
		kgo.SessionTimeout(10 * time.Second),
		kgo.HeartbeatInterval(2 * time.Second),
		kgo.MetadataMaxAge(10 * time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			slog.Info("kafka partitions assigned", "client", consumerGroup, "partitions", countParts(m))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			slog.Info("kafka partitions revoked", "client", consumerGroup, "partitions", countParts(m), "lost", false)
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				slog.Warn("kafka offset commit failed", "error", err.Error())
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			slog.Info("kafka partitions revoked", "client", consumerGroup, "partitions", countParts(m), "lost", true)
		}),
	}, extra...)...)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	go c.run()
	return c, nil
}

func countParts(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

func (c *consumer) close() {
	c.stop()
	<-c.done
}

func (c *consumer) run() {
	defer close(c.done)
	for c.stopping.Err() == nil {
		fetches := c.cl.PollRecords(c.stopping, c.workers*c.batch*2)
		if c.stopping.Err() != nil {
			c.cl.AllowRebalance()
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				slog.Warn("kafka error", "client", consumerGroup, "topic", t, "partition", p, "error", err.Error())
			}
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			queues := make([][]*kgo.Record, c.workers)
			for _, r := range recs {
				h := fnv.New32a()
				h.Write([]byte(r.Topic))
				k := (h.Sum32() ^ uint32(r.Partition)) * 16777619
				queues[k%uint32(c.workers)] = append(queues[k%uint32(c.workers)], r)
			}
			var wg sync.WaitGroup
			for _, q := range queues {
				if len(q) == 0 {
					continue
				}
				wg.Add(1)
				go func(q []*kgo.Record) {
					defer wg.Done()
					c.work(q)
				}(q)
			}
			wg.Wait()
		}
		c.cl.AllowRebalance()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.cl.CommitMarkedOffsets(ctx); err != nil {
		slog.Warn("kafka offset commit failed", "error", err.Error())
	}
	c.cl.LeaveGroup()
	c.cl.Close()
}

// work settles one worker's records in order, batch by batch; it marks each settled
// record and stops at the first one abandoned at shutdown.
func (c *consumer) work(recs []*kgo.Record) {
	for start := 0; start < len(recs); start += c.batch {
		end := min(start+c.batch, len(recs))
		items := make([]*item, 0, end-start)
		for _, r := range recs[start:end] {
			items = append(items, decode(r))
		}
		i := 0
		for i < len(items) {
			if items[i].poison != nil {
				items[i].out = c.deadLetter(items[i], items[i].poison, 1)
				if items[i].out == outStopped {
					return
				}
				c.cl.MarkCommitRecords(items[i].rec)
				i++
				continue
			}
			j := i
			for j < len(items) && items[j].poison == nil {
				j++
			}
			finished := c.runItems(items[i:j])
			for ; i < j && items[i].out != outStopped && items[i].out != outPending; i++ {
				c.cl.MarkCommitRecords(items[i].rec)
			}
			if !finished {
				return
			}
		}
	}
}

func header(r *kgo.Record, name string) (string, bool) {
	v, ok := "", false
	for _, h := range r.Headers { // the last one of a name counts
		if h.Key == name {
			v, ok = string(h.Value), true
		}
	}
	return v, ok
}

func ceToken(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// decode: the CloudEvents headers (common/src/kfk_ce.c) and the payload; a record
// that fails either is poison, one of a type not routed here is ignored.
func decode(r *kgo.Record) *item {
	it := &item{rec: r, ev: sagaEvent{topic: r.Topic, key: string(r.Key)}}
	get := func(name string, valid func(string) bool, why string) string {
		if it.poison != nil {
			return ""
		}
		v, ok := header(r, name)
		if !ok {
			it.poison = errors.New("missing header " + name)
		} else if len(v) > 255 || strings.IndexByte(v, 0) >= 0 {
			it.poison = errors.New("invalid header " + name + ": too long or holds a NUL byte")
		} else if !valid(v) {
			it.poison = errors.New("invalid header " + name + ": " + why)
		}
		return v
	}
	it.ev.ceID = get("ce_id", uuidValid, "not a UUID")
	it.ev.ceType = get("ce_type", ceToken, "empty or not printable ASCII")
	get("ce_source", ceToken, "empty or not printable ASCII")
	get("ce_time", func(s string) bool { _, err := time.Parse(time.RFC3339Nano, s); return err == nil }, "not an RFC 3339 time")
	get("ce_specversion", func(s string) bool { return s == "1.0" }, "not 1.0")
	get("content-type", func(s string) bool { return s == "application/protobuf" }, "not application/protobuf")
	if it.poison != nil {
		it.ev.ceID, it.ev.ceType = "", ""
		return it
	}
	if tp, ok := header(r, "traceparent"); ok && traceparentValid(tp) {
		it.ev.traceparent = tp
	}
	mk := routes[it.ev.ceType]
	if mk == nil {
		it.out = outIgnored
		return it
	}
	m := mk()
	if err := proto.Unmarshal(r.Value, m); err != nil {
		it.poison = errors.New("payload of " + strconv.Itoa(len(r.Value)) + " bytes does not decode as " + it.ev.ceType)
		return it
	}
	it.ev.msg = m
	it.step = stepOf(m)
	return it
}

// runItems settles items (none poison) in order, batching all it can (saga_run).
// false if one was abandoned at shutdown.
func (c *consumer) runItems(items []*item) bool {
	i, n := 0, len(items)
	for i < n {
		end, aloneIdx := n, -1
		var aloneErr error
		for {
			failed, err := c.txn(items[i:end])
			if err == nil {
				i = end
				if aloneIdx >= 0 {
					if items[aloneIdx].out = c.alone(items[aloneIdx], aloneErr); items[aloneIdx].out == outStopped {
						return false
					}
					i = aloneIdx + 1
				}
				break
			}
			if failed <= 0 {
				if items[i].out = c.alone(items[i], err); items[i].out == outStopped {
					return false
				}
				i++
				break
			}
			aloneIdx, aloneErr, end = i+failed, err, i+failed
		}
	}
	return true
}

func lockKey(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower("order:" + key)))
	return int32(h.Sum32())
}

// txn applies the pending items in one transaction; on failure, the index of the item
// that failed (-1: none in particular).
func (c *consumer) txn(items []*item) (int, error) {
	var ids, types, topics []string
	var locks []int32
	for _, it := range items {
		if it.out == outPending {
			ids, types, topics = append(ids, it.ev.ceID), append(types, it.ev.ceType), append(topics, it.ev.topic)
			locks = append(locks, lockKey(it.ev.key))
		}
	}
	if len(ids) == 0 {
		return -1, nil
	}
	sort.Slice(locks, func(a, b int) bool { return locks[a] < locks[b] })
	uniq := locks[:0]
	for k, l := range locks {
		if k == 0 || l != locks[k-1] {
			uniq = append(uniq, l)
		}
	}
	failed := -1
	ctx := context.Background()
	err := inTx(ctx, c.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		failed = -1
		rows, err := tx.Query(ctx, "WITH locks AS (SELECT count(pg_advisory_xact_lock(1935763297, k)) AS n"+
			" FROM unnest($1::int4[]) AS k)"+
			" INSERT INTO processed_events (ce_id, ce_type, topic)"+
			" SELECT e.id, e.type, e.topic FROM unnest($2::uuid[], $3::text[], $4::text[])"+
			" WITH ORDINALITY AS e(id, type, topic, i)"+
			" WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i"+
			" ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text", uniq, ids, types, topics)
		if err != nil {
			return err
		}
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, it := range items {
			it.applied = outDuplicate
		}
		for _, id := range fresh {
			for _, it := range items {
				if it.out == outPending && it.applied != outOK && strings.EqualFold(it.ev.ceID, id) {
					it.applied = outOK
					break
				}
			}
		}
		for k, it := range items {
			if it.out != outPending || it.applied != outOK {
				continue
			}
			if err := sagaApply(ctx, tx, &it.ev, it.step); err != nil {
				failed = k
				return err
			}
		}
		return nil
	})
	if err != nil {
		return failed, err
	}
	for _, it := range items {
		if it.out == outPending {
			it.out = it.applied
		}
	}
	return -1, nil
}

func (c *consumer) sleep(ms int64) bool {
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
		return true
	case <-c.stopping.Done():
		return false
	}
}

func backoff(attempt int) int64 {
	ms := int64(backoffBaseMs)
	for i := 1; i < attempt && ms < backoffMaxMs; i++ {
		ms *= 2
	}
	return min(ms, backoffMaxMs)
}

func isInvalid(err error) bool {
	var ie *invalidEvent
	return errors.As(err, &ie)
}

func (c *consumer) failedAttempt(it *item, err error, attempt int) {
	slog.Warn("event handling failed", "ce_type", it.ev.ceType, "ce_id", it.ev.ceID, "key", it.ev.key,
		"code", errCode(err), "error", err.Error(), "attempt", attempt, "transient", transient(err))
}

func errCode(err error) string {
	switch {
	case isInvalid(err):
		return "INVALID_ARGUMENT"
	case transient(err):
		return "UNAVAILABLE"
	}
	return "INTERNAL"
}

// alone: the per-event policy after the event failed once in a batch (saga_alone).
func (c *consumer) alone(it *item, first error) outcome {
	failures := 1
	if transient(first) {
		failures = 0
	}
	c.failedAttempt(it, first, 1)
	if failures >= maxAttempts || isInvalid(first) {
		return c.deadLetter(it, first, 1)
	}
	for attempt := 2; ; attempt++ {
		if !c.sleep(backoff(attempt - 1)) {
			return outStopped
		}
		_, err := c.txn([]*item{it})
		if err == nil {
			return it.out
		}
		c.failedAttempt(it, err, attempt)
		if !transient(err) {
			failures++
		}
		if failures >= maxAttempts || isInvalid(err) {
			return c.deadLetter(it, err, attempt)
		}
	}
}

// deadLetter copies the record to <topic>.dlq with the dlq_* headers of saga.h,
// retried until the broker has it (or stop).
func (c *consumer) deadLetter(it *item, why error, attempts int) outcome {
	r := it.rec
	slog.Warn("event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
		"ce_type", it.ev.ceType, "code", errCode(why), "error", why.Error(), "attempts", attempts,
		"copy", "whole", "value_bytes", len(r.Value))
	hs := append([]kgo.RecordHeader(nil), r.Headers...)
	for _, kv := range [][2]string{
		{"dlq_error", why.Error()}, {"dlq_code", errCode(why)}, {"dlq_attempts", strconv.Itoa(attempts)},
		{"dlq_source_topic", r.Topic}, {"dlq_partition", strconv.Itoa(int(r.Partition))},
		{"dlq_offset", strconv.FormatInt(r.Offset, 10)}, {"dlq_group", consumerGroup},
	} {
		hs = append(hs, kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])})
	}
	out := &kgo.Record{Topic: r.Topic + ".dlq", Key: r.Key, Value: r.Value, Headers: hs}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.dlq.ProduceSync(ctx, out).FirstErr()
		cancel()
		if err == nil {
			return outDLQ
		}
		slog.Warn("dead-letter produce failed, retrying", "topic", out.Topic, "error", err.Error())
		if !c.sleep(backoff(attempt)) {
			return outStopped
		}
	}
}

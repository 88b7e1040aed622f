// order-svc-go: a Go peer of the C order-svc (services/order), for bench/ and the
// tests' program switch only — never part of the product runtime. The same gRPC API,
// migrations, events, outbox relay, inbox, sweeper and settings; see
// bench/peers/README.md, "Go order-svc peer".
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	orderv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/order/v1"
	productv1 "github.com/shop-fleet/bench/peers/go-order-svc/gen/shop/product/v1"
)

func main() { os.Exit(run()) }

type state struct {
	migrated, started, stopping atomic.Bool
	pool                        *pgxpool.Pool
	producer                    *kgo.Client
}

func (s *state) ready(ctx context.Context) error {
	switch {
	case s.stopping.Load():
		return errors.New("shutting down")
	case !s.migrated.Load():
		return errors.New("database not migrated yet")
	case !s.started.Load():
		return errors.New("starting")
	}
	if err := s.pool.Ping(ctx); err != nil {
		return errors.New("database unavailable")
	}
	if err := s.producer.Ping(ctx); err != nil {
		return errors.New("kafka unavailable")
	}
	return nil
}

func adminServer(addr string, st *state, sw **sweeper) (*http.Server, error) {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.ready(ctx); err != nil {
			reply(w, 503, fmt.Sprintf(`{"status":"not ready","reason":%q}`, err.Error()))
			return
		}
		reply(w, 200, `{"status":"ready"}`)
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if s := *sw; s != nil {
			fmt.Fprintf(w, "order_sweeper_cancelled_total %d\norder_idempotency_keys_purged_total %d\n",
				s.cancelled.Load(), s.purged.Load())
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func run() int {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "order-svc: %s\n", err)
		return 2
	}
	var pageKey []byte
	if cfg.PageTokenKey != "" {
		if pageKey, err = parsePageKey(cfg.PageTokenKey); err != nil {
			fmt.Fprintf(os.Stderr, "order-svc: PAGE_TOKEN_KEY: %s\n", err)
			return 2
		}
	}
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("svc", "order"))
	slog.Info("settings", "grpc_addr", cfg.GRPCAddr, "admin_addr", cfg.AdminAddr, "db_pool_size", cfg.DBPoolSize,
		"kafka_brokers", cfg.KafkaBrokers, "saga_workers", cfg.SagaWorkers, "saga_batch", cfg.SagaBatch,
		"product_addr", cfg.ProductAddr, "saga_timeout", cfg.SagaTimeout.String(),
		"sweep_interval", cfg.SweepInterval.String(), "idempotency_retention", cfg.IdempotencyRetention.String())

	sec, err := newSecurity(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "order-svc: %s\n", err)
		return 2
	}
	kafkaOpts, err := kafkaOptions(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "order-svc: %s\n", err)
		return 2
	}
	grpcMode, kafkaMode := "mtls", "plaintext"
	if sec.plaintext {
		grpcMode = "plaintext"
		slog.Warn("GRPC_PLAINTEXT=true: gRPC without TLS, x-user-* metadata taken from any caller")
	}
	if cfg.KafkaUsername != "" {
		kafkaMode = "sasl_ssl plain"
	}
	slog.Info("security", "grpc", grpcMode, "identity", sec.identity(), "rpc_user_callers", strings.Join(cfg.RPCUserCallers, ","),
		"kafka", kafkaMode, "kafka_username", cfg.KafkaUsername, "database_sslmode", dbTLSMode(cfg.DatabaseURL))

	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()

	st := &state{}
	if st.pool, err = newPool(context.Background(), cfg.DatabaseURL, cfg.DBPoolSize); err != nil {
		fmt.Fprintf(os.Stderr, "order-svc: %s\n", err)
		return 2
	}
	defer st.pool.Close()
	brokers := strings.Split(cfg.KafkaBrokers, ",")
	if st.producer, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("order-svc"),
		kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(1 << 20)}, kafkaOpts...)...); err != nil {
		slog.Error("cannot start", "error", err.Error())
		return 1
	}
	defer st.producer.Close()

	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		slog.Error("cannot start", "error", err.Error())
		return 1
	}
	var sw *sweeper
	admin, err := adminServer(cfg.AdminAddr, st, &sw)
	if err != nil {
		slog.Error("cannot start", "error", err.Error())
		return 1
	}
	defer admin.Close()

	// Migrations, retried with backoff while the database is down.
	start, backoff := time.Now(), 100*time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(sigCtx, 30*time.Second)
		err = migrate(ctx, st.pool)
		cancel()
		if err == nil {
			break
		}
		if sigCtx.Err() != nil {
			return 0
		}
		if !transient(err) && !isConnErr(err) || (cfg.StartupTimeout > 0 && time.Since(start) >= cfg.StartupTimeout) {
			slog.Error("cannot start", "error", err.Error())
			return 1
		}
		slog.Warn("database not ready, retrying", "error", err.Error(), "retry_ms", backoff.Milliseconds())
		select {
		case <-sigCtx.Done():
			return 0
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	st.migrated.Store(true)

	if pageKey == nil {
		pageKey = randomPageKey()
		slog.Warn("PAGE_TOKEN_KEY is not set: page tokens are signed with a random key of this process and fail on every other instance and after a restart")
	}
	rl := startRelay(cfg.DatabaseURL, st.producer)
	conn, err := grpc.NewClient(strings.Split(cfg.ProductAddr, ",")[0], sec.dialOption())
	if err != nil {
		slog.Error("cannot start", "error", err.Error())
		return 1
	}
	sw = startSweeper(st.pool, cfg)
	cons, err := newConsumer(brokers, kafkaOpts, st.pool, st.producer, cfg.SagaWorkers, cfg.SagaBatch)
	if err != nil {
		slog.Error("cannot start", "error", err.Error())
		return 1
	}
	srv := grpc.NewServer(sec.serverOptions()...)
	hs := health.NewServer()
	orderv1.RegisterOrderServiceServer(srv, &orderServer{pool: st.pool, product: productv1.NewProductServiceClient(conn), pageKey: pageKey,
		forwardUser: sec.forwardUser()})
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("shop.order.v1.OrderService", healthpb.HealthCheckResponse_SERVING)
	go func() {
		if err := srv.Serve(lis); err != nil {
			slog.Error("grpc server failed", "error", err.Error())
		}
	}()
	st.started.Store(true)
	slog.Info("serving", "grpc_addr", cfg.GRPCAddr, "grpc_port", lis.Addr().(*net.TCPAddr).Port, "admin_addr", cfg.AdminAddr)

	<-sigCtx.Done()
	slog.Info("draining", "signal", "SIGTERM")
	// Drain in dependency order: no new calls, then no new events, then the sweeper,
	// the relay and the producer, then the database.
	st.stopping.Store(true)
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownGrace):
		srv.Stop()
	}
	cons.close()
	sw.close()
	_ = conn.Close()
	rl.stop()
	slog.Info("stopped")
	return 0
}

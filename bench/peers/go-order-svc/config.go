package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// config: the settings of the C order-svc (common/src/svc.c's common table and
// services/order/src/main.c's own), same names, defaults and ranges.
type config struct {
	GRPCAddr       string
	AdminAddr      string
	DatabaseURL    string
	DBPoolSize     int
	KafkaBrokers   string
	LogLevel       string
	ShutdownGrace  time.Duration
	StartupTimeout time.Duration
	SagaWorkers    int
	SagaBatch      int
	PageTokenKey   string

	ProductAddr          string
	SagaTimeout          time.Duration
	SweepInterval        time.Duration
	IdempotencyRetention time.Duration

	// Issue 20 (zero trust inside the fleet): the same settings as the C programs.
	TLSCAFile      string   // TLS_CA_FILE: the fleet CA (PEM)
	TLSCertFile    string   // TLS_CERT_FILE: this process's certificate (CN=order-svc)
	TLSKeyFile     string   // TLS_KEY_FILE: its key (EC P-256, PKCS#8 PEM)
	GRPCPlaintext  bool     // GRPC_PLAINTEXT=true: the explicit opt-out of mTLS
	RPCUserCallers []string // RPC_USER_CALLERS: CNs allowed to send x-user-* metadata
	KafkaUsername  string   // KAFKA_USERNAME: SASL PLAIN inside TLS when set
	KafkaPassword  string   // KAFKA_PASSWORD or KAFKA_PASSWORD_FILE
}

// parseDuration: "250ms", "2s", "5m", "1h" or bare milliseconds (common/src/config.c).
func parseDuration(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseInt(strings.TrimSuffix(s, u.suffix), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			return time.Duration(n) * u.unit, true
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

func loadConfig() (*config, error) {
	var errs []string
	str := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			return v
		}
		return def
	}
	// A secret setting: NAME, or the file NAME_FILE names (one trailing newline
	// dropped), never both: the C programs' rule (common/src/config.c).
	secret := func(name, def string) string {
		path := str(name+"_FILE", "")
		if path == "" {
			return str(name, def)
		}
		if str(name, "") != "" {
			errs = append(errs, fmt.Sprintf("%s and %s_FILE are both set: give one", name, name))
			return ""
		}
		b, err := os.ReadFile(path)
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if err != nil || v == "" {
			errs = append(errs, fmt.Sprintf("%s_FILE: cannot read a value from %s", name, path))
		}
		return v
	}
	num := func(name string, def, lo, hi int) int {
		v := str(name, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Sprintf("%s: must be an integer in [%d, %d], got %q", name, lo, hi, v))
		}
		return n
	}
	boolean := func(name string) bool {
		switch v := str(name, "false"); strings.ToLower(v) {
		case "true", "1":
			return true
		case "false", "0":
			return false
		default:
			errs = append(errs, fmt.Sprintf("%s: must be true, false, 1 or 0, got %q", name, v))
			return false
		}
	}
	dur := func(name, def string, lo, hi time.Duration) time.Duration {
		v := str(name, def)
		d, ok := parseDuration(v)
		if !ok || d < lo || d > hi {
			errs = append(errs, fmt.Sprintf("%s: must be a duration (250ms, 2s, 5m, 1h or milliseconds) in [%v, %v], got %q", name, lo, hi, v))
		}
		return d
	}
	c := &config{
		GRPCAddr:       str("GRPC_ADDR", "0.0.0.0:50051"),
		AdminAddr:      str("ADMIN_ADDR", "0.0.0.0:8081"),
		DatabaseURL:    secret("DATABASE_URL", "postgresql://order:order@127.0.0.1:5433/order"),
		DBPoolSize:     num("DB_POOL_SIZE", 8, 1, 64),
		KafkaBrokers:   str("KAFKA_BROKERS", "127.0.0.1:9092"),
		LogLevel:       str("LOG_LEVEL", "info"),
		ShutdownGrace:  dur("SHUTDOWN_GRACE", "10s", 0, 300*time.Second),
		StartupTimeout: dur("STARTUP_TIMEOUT", "0", 0, 24*time.Hour),
		SagaWorkers:    num("SAGA_WORKERS", 2, 1, 64),
		SagaBatch:      num("SAGA_BATCH", 32, 1, 1000),
		PageTokenKey:   secret("PAGE_TOKEN_KEY", ""),

		ProductAddr:          str("PRODUCT_ADDR", "127.0.0.1:50052"),
		SagaTimeout:          dur("SAGA_TIMEOUT", "30s", time.Second, 24*time.Hour),
		SweepInterval:        dur("SWEEP_INTERVAL", "1s", 10*time.Millisecond, time.Hour),
		IdempotencyRetention: dur("IDEMPOTENCY_RETENTION", "24h", time.Second, 720*time.Hour),
	}
	c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = str("TLS_CA_FILE", ""), str("TLS_CERT_FILE", ""), str("TLS_KEY_FILE", "")
	c.GRPCPlaintext = boolean("GRPC_PLAINTEXT")
	for _, cn := range strings.Split(str("RPC_USER_CALLERS", "gateway"), ",") {
		if cn = strings.TrimSpace(cn); cn != "" {
			c.RPCUserCallers = append(c.RPCUserCallers, cn)
		}
	}
	c.KafkaUsername = str("KAFKA_USERNAME", "")
	c.KafkaPassword = secret("KAFKA_PASSWORD", "")
	if !c.GRPCPlaintext && (c.TLSCAFile == "" || c.TLSCertFile == "" || c.TLSKeyFile == "") {
		errs = append(errs, "gRPC is mutual TLS by default: set TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE "+
			"(this process's identity), or GRPC_PLAINTEXT=true to opt out")
	}
	if c.KafkaUsername != "" && c.KafkaPassword == "" {
		errs = append(errs, "KAFKA_USERNAME is set: KAFKA_PASSWORD or KAFKA_PASSWORD_FILE is needed too")
	}
	if c.KafkaUsername == "" && c.KafkaPassword != "" {
		errs = append(errs, "KAFKA_PASSWORD is set without KAFKA_USERNAME")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("LOG_LEVEL: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}

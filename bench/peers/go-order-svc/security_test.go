package main

// The gRPC and Kafka security settings against real servers on loopback, with
// certificates made by the fleet's own deploy/pki.sh:
//
//	bench/peers/go-order-svc/build.sh && (cd bench/peers/go-order-svc && go test -run Security -v .)

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// pki: DIR with ca.crt and NAME.crt/NAME.key for each name, from deploy/pki.sh.
func pki(t *testing.T, dir string, names ...string) string {
	t.Helper()
	script, err := filepath.Abs("../../../deploy/pki.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is missing")
	}
	for _, n := range names {
		if out, err := exec.Command("sh", script, dir, "cert", n).CombinedOutput(); err != nil {
			t.Fatalf("pki.sh cert %s: %v: %s", n, err, out)
		}
	}
	return dir
}

func tlsConfigFor(dir, name string) *config {
	return &config{TLSCAFile: filepath.Join(dir, "ca.crt"), TLSCertFile: filepath.Join(dir, name+".crt"),
		TLSKeyFile: filepath.Join(dir, name+".key"), RPCUserCallers: []string{"gateway"}}
}

// serve: a grpc.health.v1 server with order-svc's security on loopback; its address.
func serve(t *testing.T, sec *security) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sec.serverOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// check: one Health/Check from a client with sec's client settings, x-user-* when
// user is true; the status code.
func check(t *testing.T, addr string, sec *security, user bool) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, sec.dialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if user {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-user-id", "0190c6d2-0000-7000-8000-000000000001", "x-user-role", "customer")
	}
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
	return status.Code(err)
}

func mustSecurity(t *testing.T, cfg *config) *security {
	t.Helper()
	s, err := newSecurity(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecurityGRPC(t *testing.T) {
	fleet := pki(t, filepath.Join(t.TempDir(), "fleet"), "order-svc", "gateway", "product-svc", "other-svc")
	foreign := pki(t, filepath.Join(t.TempDir(), "foreign"), "gateway")
	server := mustSecurity(t, tlsConfigFor(fleet, "order-svc"))
	if got := server.identity(); got != "order-svc" {
		t.Fatalf("identity %q, want order-svc", got)
	}
	addr := serve(t, server)
	// 127.0.0.1 and localhost are both SANs of every certificate.
	addrLocalhost := strings.Replace(addr, "127.0.0.1", "localhost", 1)
	gateway := mustSecurity(t, tlsConfigFor(fleet, "gateway"))
	product := mustSecurity(t, tlsConfigFor(fleet, "product-svc"))
	plain := &security{plaintext: true}

	cases := []struct {
		name   string
		addr   string
		client *security
		user   bool
		want   codes.Code
	}{
		{"CN=gateway with x-user-*", addr, gateway, true, codes.OK},
		{"CN=gateway by localhost", addrLocalhost, gateway, true, codes.OK},
		{"CN=product-svc without x-user-*", addr, product, false, codes.OK},
		{"CN=product-svc with x-user-*", addr, product, true, codes.PermissionDenied},
		{"CN=other-svc with x-user-*", addr, mustSecurity(t, tlsConfigFor(fleet, "other-svc")), true, codes.PermissionDenied},
		{"plaintext client", addr, plain, false, codes.Unavailable},
		{"TLS client without a certificate", addr, &security{clientTLS: &tls.Config{RootCAs: gateway.clientTLS.RootCAs}}, false, codes.Unavailable},
		{"client certificate of a foreign CA", addr, &security{clientTLS: &tls.Config{RootCAs: gateway.clientTLS.RootCAs,
			Certificates: mustSecurity(t, tlsConfigFor(foreign, "gateway")).clientTLS.Certificates}}, false, codes.Unavailable},
		{"client trusting a foreign CA only", addr, mustSecurity(t, tlsConfigFor(foreign, "gateway")), false, codes.Unavailable},
	}
	for _, c := range cases {
		if got := check(t, c.addr, c.client, c.user); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}

	// RPC_USER_CALLERS widens the list.
	cfg := tlsConfigFor(fleet, "order-svc")
	cfg.RPCUserCallers = []string{"gateway", "product-svc"}
	if got := check(t, serve(t, mustSecurity(t, cfg)), product, true); got != codes.OK {
		t.Errorf("RPC_USER_CALLERS=gateway,product-svc: CN=product-svc with x-user-*: %v, want OK", got)
	}
	// The opt-out: plaintext both ways, x-user-* taken as before.
	if got := check(t, serve(t, plain), plain, true); got != codes.OK {
		t.Errorf("GRPC_PLAINTEXT server and client: %v, want OK", got)
	}
	// A TLS client to a plaintext server fails.
	if got := check(t, serve(t, plain), gateway, false); got != codes.Unavailable {
		t.Errorf("mTLS client to a plaintext server: %v, want Unavailable", got)
	}
}

func TestSecurityDenialMessage(t *testing.T) {
	if s := status.Convert(errUserMetadata); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), "only from the gateway") {
		t.Fatalf("%v", s)
	}
}

func setenv(t *testing.T, kv map[string]string) {
	for _, k := range []string{"TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "GRPC_PLAINTEXT", "RPC_USER_CALLERS",
		"KAFKA_USERNAME", "KAFKA_PASSWORD", "KAFKA_PASSWORD_FILE", "DATABASE_URL", "DATABASE_URL_FILE"} {
		t.Setenv(k, kv[k])
	}
}

func TestSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := "postgresql://order:pw@127.0.0.1:5433/order?sslmode=verify-full&sslrootcert=/x/ca.crt"
	dbFile := filepath.Join(dir, "database-url")
	if err := os.WriteFile(dbFile, []byte(dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"TLS_CA_FILE": "/x/ca.crt", "TLS_CERT_FILE": "/x/o.crt", "TLS_KEY_FILE": "/x/o.key"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range files {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	bad := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing set", map[string]string{}, "GRPC_PLAINTEXT=true to opt out"},
		{"no key", map[string]string{"TLS_CA_FILE": "a", "TLS_CERT_FILE": "b"}, "TLS_KEY_FILE"},
		{"GRPC_PLAINTEXT=false", map[string]string{"GRPC_PLAINTEXT": "false"}, "GRPC_PLAINTEXT=true to opt out"},
		{"GRPC_PLAINTEXT=yes", map[string]string{"GRPC_PLAINTEXT": "yes"}, "GRPC_PLAINTEXT: must be"},
		{"user without password", with(map[string]string{"KAFKA_USERNAME": "order-svc"}), "KAFKA_PASSWORD"},
		{"password without user", with(map[string]string{"KAFKA_PASSWORD": "x"}), "without KAFKA_USERNAME"},
		{"password twice", with(map[string]string{"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "x", "KAFKA_PASSWORD_FILE": pw}), "both set"},
		{"database url twice", with(map[string]string{"DATABASE_URL": dbURL, "DATABASE_URL_FILE": dbFile}), "both set"},
	}
	for _, c := range bad {
		setenv(t, c.env)
		if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}

	setenv(t, map[string]string{"GRPC_PLAINTEXT": "TRUE"})
	if c, err := loadConfig(); err != nil || !c.GRPCPlaintext || strings.Join(c.RPCUserCallers, ",") != "gateway" {
		t.Errorf("GRPC_PLAINTEXT=TRUE: %+v %v", c, err)
	}
	setenv(t, with(map[string]string{"KAFKA_USERNAME": "order-svc", "KAFKA_PASSWORD_FILE": pw,
		"DATABASE_URL_FILE": dbFile, "RPC_USER_CALLERS": " gateway , admin-cli,"}))
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.KafkaPassword != "s3cret" || c.DatabaseURL != dbURL || strings.Join(c.RPCUserCallers, ",") != "gateway,admin-cli" || c.GRPCPlaintext {
		t.Errorf("settings read: %+v", c)
	}
	if m := dbTLSMode(c.DatabaseURL); m != "verify-full" {
		t.Errorf("dbTLSMode: %q", m)
	}
}

// readFrame: one Kafka request (int32 size, then int16 api key ...); its api key.
func readFrame(r io.Reader) (int16, error) {
	var size int32
	if err := binary.Read(r, binary.BigEndian, &size); err != nil {
		return 0, err
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, err
	}
	return int16(binary.BigEndian.Uint16(b)), nil
}

// TestSecurityKafkaTLS: with KAFKA_USERNAME the clients dial TLS, verify the broker
// against TLS_CA_FILE by the broker's host name, and speak Kafka inside (the first
// request, ApiVersions, arrives over TLS). SASL itself needs a real SASL_SSL broker.
func TestSecurityKafkaTLS(t *testing.T) {
	fleet := pki(t, filepath.Join(t.TempDir(), "fleet"), "kafka")
	foreign := pki(t, filepath.Join(t.TempDir(), "foreign"), "kafka")
	broker := func(dir string) (string, chan error) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "kafka.crt"), filepath.Join(dir, "kafka.key"))
		if err != nil {
			t.Fatal(err)
		}
		lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		got := make(chan error, 1)
		go func() {
			conn, err := lis.Accept()
			if err != nil {
				got <- err
				return
			}
			defer conn.Close()
			key, err := readFrame(conn)
			if err == nil && key != 18 {
				err = io.ErrUnexpectedEOF
			}
			got <- err
		}()
		return lis.Addr().String(), got
	}
	for _, c := range []struct {
		name, dir string
		ok        bool
	}{{"fleet CA", fleet, true}, {"foreign CA", foreign, false}} {
		addr, got := broker(c.dir)
		cfg := &config{KafkaUsername: "order-svc", KafkaPassword: "pw", TLSCAFile: filepath.Join(fleet, "ca.crt")}
		opts, err := kafkaOptions(cfg)
		if err != nil || len(opts) != 2 {
			t.Fatalf("kafkaOptions: %v %d", err, len(opts))
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cl.Ping(ctx)
		cancel()
		cl.Close()
		select {
		case err := <-got:
			if (err == nil) != c.ok {
				t.Errorf("%s: broker side: %v, want ok=%v", c.name, err, c.ok)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s: the client never dialed", c.name)
		}
	}
	if opts, err := kafkaOptions(&config{}); err != nil || opts != nil {
		t.Errorf("without KAFKA_USERNAME: %v %v, want plaintext (no options)", opts, err)
	}
}

package main

// Issue 20, zero trust inside the fleet, as the C programs do it: gRPC with mutual
// TLS (this process's identity in TLS_CERT_FILE/TLS_KEY_FILE, peers verified against
// TLS_CA_FILE), x-user-* metadata accepted only from the certificate CNs of
// RPC_USER_CALLERS, Kafka with SASL PLAIN inside TLS (the fleet's mechanism: Debian's
// librdkafka cannot log in with SCRAM to Kafka 4, docs/decisions.md). GRPC_PLAINTEXT=true is
// the explicit opt-out for gRPC.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// errUserMetadata: the answer to x-user-* metadata from a caller not trusted with it.
var errUserMetadata = status.Error(codes.PermissionDenied, "x-user-* metadata only from the gateway")

type security struct {
	plaintext bool
	serverTLS *tls.Config // nil in plaintext
	clientTLS *tls.Config // nil in plaintext
	callers   map[string]bool
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TLS_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS_CA_FILE: no PEM certificate in %s", path)
	}
	return pool, nil
}

// newSecurity: the gRPC server and client TLS settings from cfg, or plaintext when
// cfg says GRPC_PLAINTEXT=true (loadConfig has refused a config with neither).
func newSecurity(cfg *config) (*security, error) {
	s := &security{plaintext: cfg.GRPCPlaintext, callers: map[string]bool{}}
	for _, cn := range cfg.RPCUserCallers {
		s.callers[cn] = true
	}
	if s.plaintext {
		return s, nil
	}
	ca, err := loadCA(cfg.TLSCAFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	s.serverTLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	// ServerName is left empty: grpc-go takes the target's host, so 127.0.0.1:port
	// is checked against the certificate's IP SAN and product-svc:port against its DNS one.
	s.clientTLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      ca,
	}
	return s, nil
}

// identity: the CN of this process's certificate, for the start-up log line.
func (s *security) identity() string {
	if s.serverTLS == nil {
		return ""
	}
	c := s.serverTLS.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf.Subject.CommonName
	}
	if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
		return leaf.Subject.CommonName
	}
	return ""
}

func (s *security) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := s.checkUserMetadata(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.checkUserMetadata(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
	if s.serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.serverTLS)))
	}
	return opts
}

func (s *security) dialOption() grpc.DialOption {
	if s.clientTLS == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS))
}

// peerCN: the CN of the verified client certificate of the call, "" without one.
func peerCN(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return ti.State.VerifiedChains[0][0].Subject.CommonName
}

// checkUserMetadata: x-user-id / x-user-role only from a caller whose certificate CN
// is in RPC_USER_CALLERS. In plaintext (the opt-out) no caller has an identity, and
// the metadata is taken as before issue 20.
func (s *security) checkUserMetadata(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("x-user-id")) == 0 && len(md.Get("x-user-role")) == 0 {
		return nil
	}
	if s.plaintext {
		return nil
	}
	if cn := peerCN(ctx); !s.callers[cn] {
		slog.Warn("x-user-* metadata refused", "peer_cn", cn)
		return errUserMetadata
	}
	return nil
}

// forwardUser: whether x-user-* go on to product-svc. Under mTLS they are not sent:
// product-svc takes them only from RPC_USER_CALLERS (the gateway), and
// BatchGetProducts, the only call made, reads none.
func (s *security) forwardUser() bool { return s.plaintext }

// kafkaOptions: SASL PLAIN inside TLS (the broker verified against
// TLS_CA_FILE, or the system's roots without it) when KAFKA_USERNAME is set;
// plaintext otherwise.
func kafkaOptions(cfg *config) ([]kgo.Opt, error) {
	if cfg.KafkaUsername == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12} // ServerName: franz-go uses each broker's host
	if cfg.TLSCAFile != "" {
		ca, err := loadCA(cfg.TLSCAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = ca
	}
	auth := plain.Auth{User: cfg.KafkaUsername, Pass: cfg.KafkaPassword}
	return []kgo.Opt{kgo.DialTLSConfig(tc), kgo.SASL(auth.AsMechanism())}, nil
}

// dbTLSMode: the sslmode of a postgresql:// URL, for the start-up log line only
// (pgx reads sslmode, sslrootcert and the rest itself).
func dbTLSMode(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if m := u.Query().Get("sslmode"); m != "" {
			return m
		}
		return "prefer (default)"
	}
	for _, kv := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(kv, "sslmode="); ok {
			return v
		}
	}
	return "prefer (default)"
}

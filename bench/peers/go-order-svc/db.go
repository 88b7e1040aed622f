package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The migrations are copied from migrations/{common,order} by build.sh (never edited
// here): the same files, versions and names as the C program embeds.
//
//go:embed migrations
var migrationFS embed.FS

// Advisory lock keys shared with the C programs (common/include/common/db.h, outbox.h).
const (
	migrateLockKey = int64(0x73686f706d696772) // "shopmigr"
	outboxLockKey  = int64(0x6f7574626f78)     // "outbox"
	sagaLockNS     = int32(1935763297)         // the saga's two-key advisory locks
)

func newPool(ctx context.Context, url string, size int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.MaxConns = int32(size)
	cfg.MinConns = 0
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "order-svc"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(component string) ([]migration, error) {
	dir := path.Join("migrations", component)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		stem := strings.TrimSuffix(e.Name(), ".sql")
		digits, _, _ := strings.Cut(stem, "_")
		v, err := strconv.Atoi(digits)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: bad version", e.Name())
		}
		body, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{v, stem, string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies what schema_migrations does not record yet, under the same
// advisory lock and bookkeeping as common/src/db_migrate.c, so the C and the Go
// program can take turns on one database.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1::bigint)", migrateLockKey); err != nil {
		return err
	}
	defer func() {
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1::bigint)", migrateLockKey); err != nil {
			_ = conn.Conn().Close(context.Background()) // closing releases it
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
 component text NOT NULL, version int NOT NULL, name text NOT NULL,
 applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))`); err != nil {
		return err
	}
	for _, component := range []string{"common", "order"} {
		ms, err := loadMigrations(component)
		if err != nil {
			return err
		}
		rows, err := conn.Query(ctx, "SELECT version, name FROM schema_migrations WHERE component = $1", component)
		if err != nil {
			return err
		}
		done := map[int]string{}
		for rows.Next() {
			var v int
			var n string
			if err := rows.Scan(&v, &n); err != nil {
				rows.Close()
				return err
			}
			done[v] = n
		}
		rows.Close()
		if rows.Err() != nil {
			return rows.Err()
		}
		known := map[int]bool{}
		for _, m := range ms {
			known[m.version] = true
			if n, ok := done[m.version]; ok && n != m.name {
				return fmt.Errorf("migration %s version %d was applied as %s but this program has %s", component, m.version, n, m.name)
			}
		}
		for v, n := range done {
			if !known[v] {
				slog.Warn("database has a migration this program does not know (a newer version ran)", "component", component, "version", v, "name", n)
			}
		}
		for _, m := range ms {
			if _, ok := done[m.version]; ok {
				continue
			}
			t0 := time.Now()
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				// The simple protocol: a file holds several statements.
				if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)", component, m.version, m.name)
				return err
			})
			if err != nil {
				return fmt.Errorf("migration %s/%s failed: %w", component, m.name, err)
			}
			slog.Info("migration applied", "component", component, "name", m.name, "duration_ms", time.Since(t0).Milliseconds())
		}
	}
	return nil
}

// transient: errors worth retrying as they are (an outage, a conflict between
// transactions), as common/src/err.c err_is_transient after db.h's translation.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03", pe.Code == "57P01",
			pe.Code == "57P02", pe.Code == "57P03", pe.Code == "53300", strings.HasPrefix(pe.Code, "08"):
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err) || isConnErr(err)
}

func isConnErr(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.Timeout(err) || strings.Contains(err.Error(), "conn closed") ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "failed to connect")
}

// inTx runs fn in a READ COMMITTED transaction, retried (up to 3 times) when it
// failed on a serialization failure or a deadlock, as common/src/db_txn.c.
func inTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = pgx.BeginTxFunc(ctx, pool, opts, fn)
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) || (pe.Code != "40001" && pe.Code != "40P01") {
			return err
		}
	}
	return err
}

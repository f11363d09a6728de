package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresSchema creates an empty schema in the test database (see
// PostgresURL, which skips the test when none is configured) and drops it,
// with everything in it, when the test ends. It returns the schema's name and
// a DSN whose search_path selects it, so a relay opened on the DSN keeps its
// tables there.
func PostgresSchema(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	base := PostgresURL(tb)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("random schema name: %v", err)
	}
	schema = "e2e_" + hex.EncodeToString(b[:])
	postgresExec(tb, base, "CREATE SCHEMA "+schema)
	tb.Cleanup(func() { postgresExec(tb, base, "DROP SCHEMA "+schema+" CASCADE") })
	return PostgresDSN(tb, base, schema), schema
}

// PostgresDSN returns base (a postgres:// URL or key=value string) with
// search_path set to schema. pgx passes search_path on as a run-time
// parameter of every session it opens.
func PostgresDSN(tb testing.TB, base, schema string) string {
	tb.Helper()
	if !strings.Contains(base, "://") {
		return fmt.Sprintf("%s search_path=%s", base, schema)
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("parse %s: %v", PGEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// postgresExec runs sql on a short-lived connection of its own.
func postgresExec(tb testing.TB, dsn, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

package testutil

import (
	"os"
	"testing"
)

// PGEnv names the variable that enables the PostgreSQL tests.
const PGEnv = "WAMM_RELAY_TEST_PG"

// PostgresURL returns the test database URL, or skips the test with a message
// saying how to enable it.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(PGEnv)
	if url == "" {
		tb.Skipf("PostgreSQL tests skipped: set %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable", PGEnv, PGEnv)
	}
	return url
}

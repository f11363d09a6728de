package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/store"
)

func TestDiskFullIsStoreErrDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		full bool
	}{
		{"disk_full", &pgconn.PgError{Code: "53100"}, true},
		{"disk_full, wrapped", fmt.Errorf("exec: %w", &pgconn.PgError{Code: "53100"}), true},
		{"out_of_memory is not", &pgconn.PgError{Code: "53200"}, false},
		{"deadlock is not", &pgconn.PgError{Code: "40P01"}, false},
		{"not a server error", errors.New("connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := diskFull(tc.err)
			require.Equal(t, tc.full, errors.Is(err, store.ErrDiskFull))
			require.ErrorIs(t, err, tc.err, "the cause stays in the chain")
		})
	}
}

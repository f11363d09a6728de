package app

import (
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/config"
)

// [store] vacuum_every = 0 means never; the store's own zero means its
// default, so the mapping must not pass 0 through.
func TestPostgresOptionsVacuumEvery(t *testing.T) {
	for _, tc := range []struct {
		config, store int
	}{
		{config: 0, store: -1},
		{config: 1, store: 1},
		{config: 20000, store: 20000},
	} {
		cfg := config.Default()
		cfg.Store.VacuumEvery = tc.config
		require.Equal(t, tc.store, postgresOptions(cfg, logrus.New()).VacuumEvery, "vacuum_every = %d", tc.config)
	}
}

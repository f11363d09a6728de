package logx

import (
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

func TestDebugEnabled(t *testing.T) {
	for _, tt := range []struct {
		level logrus.Level
		want  bool
	}{
		{logrus.InfoLevel, false},
		{logrus.DebugLevel, true},
		{logrus.TraceLevel, true},
	} {
		l := logrus.New()
		l.SetLevel(tt.level)
		require.Equal(t, tt.want, DebugEnabled(l), "logger at %s", tt.level)
		require.Equal(t, tt.want, DebugEnabled(l.WithField("k", "v")), "entry at %s", tt.level)
	}
}

package deploytest

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAlertRules runs promtool over alerts.yml: the rules parse and every
// alert fires (and stays silent) as alerts_test.yml says.
func TestAlertRules(t *testing.T) {
	promtool := promtoolBinary(t)
	dir := filepath.Join(repoRoot(t), "deploy/prometheus")
	out, err := run(t, dir, promtool, "check", "rules", "alerts.yml")
	require.NoError(t, err, out)
	out, err = run(t, dir, promtool, "test", "rules", "alerts_test.yml")
	require.NoError(t, err, out)

	// Every alert has a unit test.
	tests := readFile(t, filepath.Join(dir, "alerts_test.yml"))
	for _, line := range strings.Split(readFile(t, filepath.Join(dir, "alerts.yml")), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok {
			require.Contains(t, tests, "alertname: "+name, "alert %s has no test in alerts_test.yml", name)
		}
	}
}

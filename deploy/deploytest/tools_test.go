package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// HelmVersion is the helm release .ci/run builds from its Go module.
const HelmVersion = "v4.3.2"

// repoRoot is two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// tool finds an external program: $envVar, then PATH, then the extra
// locations. Without it the test skips, unless WAMM_RELAY_DEPLOY_TOOLS is
// "required" (CI), where a missing tool fails.
func tool(t *testing.T, name, envVar string, extra ...string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", envVar, p, err)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := name + " not found (set " + envVar + ", put it on PATH, or run .ci/run which installs it)"
	if os.Getenv("WAMM_RELAY_DEPLOY_TOOLS") == "required" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func helmBinary(t *testing.T) string {
	t.Helper()
	var extra []string
	if cache, err := os.UserCacheDir(); err == nil {
		extra = append(extra, filepath.Join(cache, "wamm-relay-ci", "helm-"+HelmVersion, "helm"))
	}
	return tool(t, "helm", "HELM", extra...)
}

func promtoolBinary(t *testing.T) string {
	t.Helper()
	return tool(t, "promtool", "PROMTOOL")
}

// run runs a program in dir and returns its combined output.
func run(t *testing.T, dir, prog string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

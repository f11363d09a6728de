package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestExitCodes(t *testing.T) {
	valid := writeFile(t, "ok.toml", `
[server]
listen = "127.0.0.1:0"
webhook_secret = "hook-secret-value"
admin_token = "admin-token-0123456789"
[store]
dsn = "`+filepath.Join(t.TempDir(), "relay.db")+`"
[[targets]]
name = "crm"
url = "http://127.0.0.1:9/hook"
headers = { Authorization = "Bearer crm-credential" }
`)
	invalid := writeFile(t, "bad.toml", `
[server]
max_body_bytes = -1
`)
	unknownKey := writeFile(t, "unknown.toml", `
[server]
listn = ":8080"
`)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  []string
		notInOut []string
	}{
		{name: "no command", args: nil, wantCode: 2, wantErr: []string{"missing command", "Usage"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantErr: []string{`unknown command "frobnicate"`}},
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: []string{"wamm-relay dev"}},
		{
			name: "check-config valid prints the effective config with secrets masked", args: []string{"check-config", "-config", valid},
			wantCode: 0, wantOut: []string{"is valid", "crm", "****"},
			notInOut: []string{"hook-secret-value", "admin-token-0123456789", "crm-credential"},
		},
		{name: "check-config invalid names the key", args: []string{"check-config", "-config", invalid}, wantCode: 2, wantErr: []string{"server.max_body_bytes"}},
		{name: "check-config unknown key names it", args: []string{"check-config", "-config", unknownKey}, wantCode: 2, wantErr: []string{"server.listn"}},
		{name: "check-config missing file", args: []string{"check-config", "-config", filepath.Join(t.TempDir(), "nope.toml")}, wantCode: 2, wantErr: []string{"nope.toml"}},
		{name: "bad flag", args: []string{"serve", "--bogus"}, wantCode: 2, wantErr: []string{"bogus"}},
		{name: "reconcile needs --once", args: []string{"reconcile", "-config", valid}, wantCode: 2, wantErr: []string{"--once"}},
		{name: "reconcile without a token is a config error", args: []string{"reconcile", "--once", "-config", valid}, wantCode: 2, wantErr: []string{"wamm.token"}},
		{name: "deliveries without a verb", args: []string{"deliveries"}, wantCode: 2, wantErr: []string{"list, replay, purge or reassign"}},
		{name: "replay needs a selection", args: []string{"deliveries", "replay", "-config", valid}, wantCode: 2, wantErr: []string{"--id"}},
		{name: "list rejects an unknown status", args: []string{"deliveries", "list", "--status", "lost", "-config", valid}, wantCode: 2, wantErr: []string{"--status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			require.Equal(t, tt.wantCode, code, "stdout: %s\nstderr: %s", out.String(), errOut.String())
			for _, s := range tt.wantOut {
				require.Contains(t, out.String(), s)
			}
			for _, s := range tt.wantErr {
				require.Contains(t, errOut.String(), s)
			}
			for _, s := range tt.notInOut {
				require.NotContains(t, out.String()+errOut.String(), s)
			}
		})
	}
}

func TestConfigPathFromEnvironment(t *testing.T) {
	p := writeFile(t, "env.toml", "[server]\nlisten = \"127.0.0.1:0\"\n")
	t.Setenv("WAMM_RELAY_CONFIG", p)
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"check-config"}, &out, &errOut), errOut.String())
	require.True(t, strings.Contains(out.String(), p))
}

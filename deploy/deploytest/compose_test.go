package deploytest

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wamm-relay/wamm-relay/config"
)

const composeDir = "deploy/compose"

// composeFile is the part of docker-compose.yml the test looks at.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		ReadOnly    bool   `yaml:"read_only"`
		Healthcheck any    `yaml:"healthcheck"`
		StopGrace   string `yaml:"stop_grace_period"`
	} `yaml:"services"`
}

// composeDefault resolves compose's ${VAR:-default} as with VAR unset.
var composeDefault = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}`)

func TestComposeRunsTwoRelaysOnPostgresBehindNginx(t *testing.T) {
	dir := filepath.Join(repoRoot(t), composeDir)
	raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	require.NoError(t, err)
	var cf composeFile
	require.NoError(t, yaml.Unmarshal(raw, &cf), "docker-compose.yml is not YAML")
	for _, name := range []string{"postgres", "relay1", "relay2", "nginx"} {
		require.Contains(t, cf.Services, name, "service %s missing", name)
	}
	require.NotNil(t, cf.Services["postgres"].Healthcheck, "relays wait for a healthy postgres")

	nginxConf, err := os.ReadFile(filepath.Join(dir, "nginx.conf"))
	require.NoError(t, err)
	for _, relay := range []string{"relay1", "relay2"} {
		s := cf.Services[relay]
		// Built from the repository's Dockerfile.
		require.FileExists(t, filepath.Join(dir, s.Build.Context, s.Build.Dockerfile), relay)
		require.Equal(t, "service_healthy", s.DependsOn["postgres"].Condition, relay)
		require.True(t, s.ReadOnly, "%s: root filesystem should be read-only", relay)
		require.Contains(t, string(nginxConf), "server "+relay+":8080;", "nginx does not balance over %s", relay)
		require.Equal(t, "service_healthy", cf.Services["nginx"].DependsOn[relay].Condition)

		// The mounted config is the one the command reads, and the relay accepts it
		// with the environment compose gives it.
		cfgPath := s.Command[len(s.Command)-1]
		host := ""
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == cfgPath {
				host = filepath.Join(dir, parts[0])
			}
		}
		require.NotEmpty(t, host, "%s: nothing mounted at %s", relay, cfgPath)
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = composeDefault.ReplaceAllString(v, "$2")
		}
		f, err := os.Open(host)
		require.NoError(t, err)
		cfg, err := config.ParseWith(f, func(name string) (string, bool) { v, ok := env[name]; return v, ok })
		f.Close()
		require.NoError(t, err, "%s: the relay rejects %s", relay, host)
		require.Equal(t, "postgres", cfg.Store.Driver)
		dsn, err := url.Parse(cfg.Store.DSN)
		require.NoError(t, err)
		require.Equal(t, "postgres", dsn.Hostname(), "%s: DSN does not point at the postgres service", relay)
		require.Positive(t, cfg.Server.DrainDelay.Duration, "%s: no drain_delay behind nginx", relay)
		require.NotEmpty(t, cfg.Server.TrustedProxies, "%s: nginx's X-Forwarded-For is not trusted", relay)
		for _, tg := range cfg.Targets {
			u, err := url.Parse(tg.URL)
			require.NoError(t, err)
			require.Contains(t, cf.Services, u.Hostname(), "target %s points outside the stack", tg.Name)
		}
	}
	for _, loc := range []string{"location /webhook", "location /api/"} {
		require.Contains(t, string(nginxConf), loc)
	}
	require.Contains(t, cf.Services["nginx"].Volumes, "./nginx.conf:/etc/nginx/nginx.conf:ro")
}

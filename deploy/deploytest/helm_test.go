package deploytest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wamm-relay/wamm-relay/config"
)

const chartDir = "deploy/helm/wamm-relay"

// manifest is one rendered Kubernetes object.
type manifest map[string]any

// get walks a path of map keys and list indexes.
func (m manifest) get(path ...any) any {
	var cur any = map[string]any(m)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = mm[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func (m manifest) str(path ...any) string {
	s, _ := m.get(path...).(string)
	return s
}

func (m manifest) num(path ...any) int {
	n, _ := m.get(path...).(int)
	return n
}

func helmTemplate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	helm := helmBinary(t)
	return run(t, repoRoot(t), helm, append([]string{"template", "rel", chartDir}, args...)...)
}

func parseManifests(t *testing.T, out string) map[string]manifest {
	t.Helper()
	byKind := map[string]manifest{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		// A plain map, so nested maps decode as map[string]any too.
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "rendered chart is not YAML")
		if doc == nil {
			continue
		}
		m := manifest(doc)
		kind := m.str("kind")
		require.NotContains(t, byKind, kind, "two %s objects rendered", kind)
		byKind[kind] = m
	}
	return byKind
}

// dockerfileUser is the uid the image runs as (USER uid:gid).
func dockerfileUser(t *testing.T) int {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	uid := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var u, g int
		if n, _ := fmt.Sscanf(sc.Text(), "USER %d:%d", &u, &g); n >= 1 {
			uid = u
		}
	}
	require.NoError(t, sc.Err())
	require.GreaterOrEqual(t, uid, 1, "Dockerfile has no numeric non-root USER")
	return uid
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func TestHelmChartRendersARunnableDeployment(t *testing.T) {
	cases := []struct {
		name           string
		args           []string
		driver         string
		replicas       int
		serviceMonitor bool
		secretEnv      []string // env vars that must come from a Secret
	}{
		{
			name: "default values", driver: "sqlite", replicas: 1,
			secretEnv: []string{"WAMM_TOKEN", "WAMM_RELAY_ADMIN_TOKEN", "WAMM_RELAY_WEBHOOK_SECRET"},
		},
		{
			name: "postgres with ServiceMonitor", args: []string{"-f", chartDir + "/ci/postgres-values.yaml"},
			driver: "postgres", replicas: 2, serviceMonitor: true,
			secretEnv: []string{"WAMM_TOKEN", "WAMM_RELAY_ADMIN_TOKEN", "WAMM_RELAY_WEBHOOK_SECRET", "PG_DSN",
				"WAMM_RELAY_TARGET_0_SIGNING_SECRET"},
		},
	}
	uid := dockerfileUser(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, tc.args...)
			require.NoError(t, err, out)
			objs := parseManifests(t, out)

			dep := objs["Deployment"]
			require.NotNil(t, dep, "no Deployment rendered")
			require.Equal(t, tc.replicas, dep.num("spec", "replicas"))
			podLabels := dep.get("spec", "template", "metadata", "labels").(map[string]any)
			require.Equal(t, dep.get("spec", "selector", "matchLabels"), subset(podLabels, dep.get("spec", "selector", "matchLabels")))
			pod := manifest(dep.get("spec", "template", "spec").(map[string]any))
			c := manifest(pod.get("containers", 0).(map[string]any))

			// Probes on the relay's endpoints, by the named port.
			require.Equal(t, "/readyz", c.str("readinessProbe", "httpGet", "path"))
			require.Equal(t, "http", c.str("readinessProbe", "httpGet", "port"))
			require.Equal(t, "/healthz", c.str("livenessProbe", "httpGet", "path"))
			require.Equal(t, "http", c.str("livenessProbe", "httpGet", "port"))
			require.Equal(t, "http", c.str("ports", 0, "name"))

			// Non-root, read-only, as the image's user.
			require.Equal(t, true, pod.get("securityContext", "runAsNonRoot"))
			require.Equal(t, uid, pod.num("securityContext", "runAsUser"))
			require.Equal(t, true, c.get("securityContext", "readOnlyRootFilesystem"))
			require.Equal(t, false, c.get("securityContext", "allowPrivilegeEscalation"))
			require.NotNil(t, c.get("resources", "requests"), "no resource requests")

			// The config the relay reads is the ConfigMap's config.toml.
			cm := objs["ConfigMap"]
			require.NotNil(t, cm, "no ConfigMap rendered")
			toml := cm.str("data", "config.toml")
			require.NotEmpty(t, toml)
			require.Contains(t, c.get("args"), "/etc/wamm-relay/config.toml")
			requireMount(t, pod, c, "/etc/wamm-relay", "configMap", cm.str("metadata", "name"))

			// Every ${NAME} the config references is set; secrets come from Secrets.
			env := map[string]manifest{}
			for _, e := range c.get("env").([]any) {
				m := manifest(e.(map[string]any))
				env[m.str("name")] = m
			}
			for _, ref := range envRef.FindAllStringSubmatch(toml, -1) {
				require.Contains(t, env, ref[1], "config.toml references ${%s}, the container does not set it", ref[1])
			}
			for _, name := range tc.secretEnv {
				require.Contains(t, env, name)
				require.NotEmpty(t, env[name].str("valueFrom", "secretKeyRef", "name"), "%s is not read from a Secret", name)
				require.NotEmpty(t, env[name].str("valueFrom", "secretKeyRef", "key"), name)
				require.Contains(t, toml, "${"+name+"}", "config.toml does not use %s", name)
			}
			if sec := objs["Secret"]; sec != nil {
				require.Equal(t, sec.str("metadata", "name"), env["WAMM_RELAY_ADMIN_TOKEN"].str("valueFrom", "secretKeyRef", "name"))
				for _, v := range asMap(sec.get("stringData")) {
					require.NotContains(t, toml, v, "a secret value leaked into the ConfigMap")
				}
			}

			// The relay accepts the rendered config.
			cfg, err := config.ParseWith(strings.NewReader(toml), func(name string) (string, bool) {
				return fakeEnv(name), true
			})
			require.NoError(t, err, "the relay rejects the rendered config.toml:\n%s", toml)
			require.Equal(t, tc.driver, cfg.Store.Driver)
			require.Equal(t, ":"+fmt.Sprint(c.num("ports", 0, "containerPort")), cfg.Server.Listen)

			// preStop sleeps drain_delay; the grace period outlasts the whole stop.
			drain := cfg.Server.DrainDelay.Duration
			require.Positive(t, drain, "drain_delay is 0")
			sleep := time.Duration(c.num("lifecycle", "preStop", "sleep", "seconds")) * time.Second
			require.Equal(t, drain, sleep, "preStop sleep differs from drain_delay")
			grace := time.Duration(pod.num("terminationGracePeriodSeconds")) * time.Second
			require.Greater(t, grace, sleep+drain+cfg.Server.ShutdownTimeout.Duration,
				"terminationGracePeriodSeconds does not cover preStop + drain_delay + shutdown_timeout")

			// The store: SQLite on a claimed volume at its path, PostgreSQL from the Secret.
			if tc.driver == "sqlite" {
				require.Equal(t, "Recreate", dep.str("spec", "strategy", "type"))
				require.True(t, strings.HasPrefix(cfg.Store.DSN, "/data/"), cfg.Store.DSN)
				require.NotNil(t, objs["PersistentVolumeClaim"])
				requireMount(t, pod, c, "/data", "persistentVolumeClaim", objs["PersistentVolumeClaim"].str("metadata", "name"))
			} else {
				require.Equal(t, fakeEnv("PG_DSN"), cfg.Store.DSN)
			}

			// Service, PodDisruptionBudget and ServiceMonitor select the pods.
			svc := objs["Service"]
			require.NotNil(t, svc)
			require.Equal(t, "http", svc.str("spec", "ports", 0, "targetPort"))
			require.Equal(t, svc.get("spec", "selector"), subset(podLabels, svc.get("spec", "selector")))
			pdb := objs["PodDisruptionBudget"]
			require.NotNil(t, pdb, "no PodDisruptionBudget")
			require.Equal(t, pdb.get("spec", "selector", "matchLabels"), subset(podLabels, pdb.get("spec", "selector", "matchLabels")))
			sm := objs["ServiceMonitor"]
			if !tc.serviceMonitor {
				require.Nil(t, sm)
				return
			}
			require.NotNil(t, sm, "no ServiceMonitor")
			require.Equal(t, "/metrics", sm.str("spec", "endpoints", 0, "path"))
			require.Equal(t, "http", sm.str("spec", "endpoints", 0, "port"))
			require.Equal(t, sm.get("spec", "selector", "matchLabels"), subset(asMap(svc.get("metadata", "labels")), sm.get("spec", "selector", "matchLabels")))
		})
	}
}

func TestHelmChartRefusesBrokenValues(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"sqlite scaled out", []string{"--set", "replicaCount=3"}, "store.driver sqlite runs one replica"},
		{"postgres without DSN", []string{"--set", "store.driver=postgres"}, "needs secrets.values.pgDSN"},
		{"unknown driver", []string{"--set", "store.driver=mysql"}, "must be sqlite or postgres"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, tc.args...)
			require.Error(t, err, out)
			require.Contains(t, out, tc.want)
		})
	}
}

func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for _, args := range [][]string{nil, {"-f", chartDir + "/ci/postgres-values.yaml"}} {
		out, err := run(t, repoRoot(t), helm, append([]string{"lint", "--strict", chartDir}, args...)...)
		require.NoError(t, err, out)
	}
}

// requireMount checks that the container mounts, at path, a volume of the
// given source kind and name.
func requireMount(t *testing.T, pod, c manifest, path, kind, name string) {
	t.Helper()
	volName := ""
	for _, m := range c.get("volumeMounts").([]any) {
		if mm := manifest(m.(map[string]any)); mm.str("mountPath") == path {
			volName = mm.str("name")
		}
	}
	require.NotEmpty(t, volName, "nothing mounted at %s", path)
	for _, v := range pod.get("volumes").([]any) {
		vm := manifest(v.(map[string]any))
		if vm.str("name") != volName {
			continue
		}
		got := vm.str(kind, "name")
		if kind == "persistentVolumeClaim" {
			got = vm.str(kind, "claimName")
		}
		require.Equal(t, name, got, "volume %s at %s is not %s %s", volName, path, kind, name)
		return
	}
	t.Fatalf("volume %s mounted at %s is not defined", volName, path)
}

// fakeEnv gives each referenced variable a value the relay accepts.
func fakeEnv(name string) string {
	switch {
	case name == "PG_DSN":
		return "postgres://relay:pw@db:5432/relay"
	case strings.HasSuffix(name, "SIGNING_SECRET"):
		return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	default:
		return "value-of-" + strings.ToLower(name) + "-long-enough"
	}
}

func asMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, val := range m {
		out[k] = fmt.Sprint(val)
	}
	return out
}

// subset returns the entries of labels named in sel, so that
// require.Equal(sel, subset(labels, sel)) says "sel selects labels".
func subset[V any](labels map[string]V, sel any) map[string]any {
	out := map[string]any{}
	for k := range asMap(sel) {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

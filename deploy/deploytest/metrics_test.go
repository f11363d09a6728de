package deploytest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/wamm-relay/wamm-relay/app"
	"github.com/wamm-relay/wamm-relay/config"
	"github.com/wamm-relay/wamm-relay/internal/testutil"
	"github.com/wamm-relay/wamm-relay/wamm/wammfake"
)

const (
	alertsFile    = "deploy/prometheus/alerts.yml"
	dashboardFile = "deploy/grafana/wamm-relay.json"
)

// addedThisRound are metrics the scraped relay cannot show: they exist
// only in a state the scrape does not set up.
var addedThisRound = []string{
	// Exported only while a removed target has pending deliveries.
	"wamm_relay_orphaned_pending_deliveries",
}

var (
	metricName = regexp.MustCompile(`\bwamm_relay_[a-z0-9_]+`)
	// selector matches name{matchers}; matcher one label matcher in it.
	selector = regexp.MustCompile(`\b(wamm_relay_[a-z0-9_]+)\{([^}]*)\}`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"`)
)

// exported is what a real relay's /metrics holds: per series name (with
// the _bucket/_sum/_count of histograms), each label's values seen.
type exported map[string]map[string][]string

// scrapeRelay runs a whole relay in-process (SQLite, the reconciler against
// a fake WAMM account, one target), makes every component record
// something, and returns its /metrics.
func scrapeRelay(t *testing.T) exported {
	t.Helper()
	const token = "deploytest-token-never-logged"
	account := wammfake.New(wammfake.Options{Token: token})
	// The first pass's channel check and poll fail, so the API error
	// counters have a series.
	account.SetAPIFailure(wammfake.APIFailure{Status: http.StatusBadGateway, Calls: 2})
	api := httptest.NewServer(account.Handler())
	t.Cleanup(api.Close)
	crm := testutil.NewTarget(t)

	cfg := config.Default()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = config.D(5 * time.Second)
	cfg.Store.DSN = filepath.Join(t.TempDir(), "relay.db")
	cfg.WAMM.APIURL = api.URL + "/api2"
	cfg.WAMM.Token = token
	cfg.Reconcile.Interval = config.D(time.Second)
	cfg.Reconcile.BackoffMax = config.D(time.Second)
	cfg.Reconcile.Grace = config.D(100 * time.Millisecond)
	cfg.Targets = []config.Target{{Name: "crm", URL: crm.URL}}

	log := logrus.New()
	log.SetOutput(testWriter{t})
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: cfg, Logger: log, Version: "test"})
	require.NoError(t, err)
	addr, err := a.Listen()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, a.Close())
	})
	base := "http://" + addr.String()

	resp, err := http.Post(base+"/webhook", "application/json",
		strings.NewReader(`{"tip":"msg","msg_data":{"msg_id":4242,"state":"received"}}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	crm.WaitDelivered(t, 10*time.Second, "msg:4242")

	var got exported
	require.Eventually(t, func() bool {
		var fams map[string]*dto.MetricFamily
		got, fams = scrape(t, base)
		return counter(fams, "wamm_relay_reconcile_polls_total", "outcome", "error") >= 1 &&
			counter(fams, "wamm_relay_reconcile_polls_total", "outcome", "ok") >= 1
	}, 15*time.Second, 50*time.Millisecond, "reconciler did not fail once and then succeed")
	return got
}

// counter sums the series of a counter family with label = value.
func counter(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func (e exported) hasValue(name string) bool { _, ok := e[name]; return ok }

func scrape(t *testing.T, base string) (exported, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := exported{}
	for name, fam := range fams {
		names := []string{name}
		if fam.GetType().String() == "HISTOGRAM" {
			names = append(names, name+"_bucket", name+"_sum", name+"_count")
		}
		labels := map[string][]string{}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels[l.GetName()], l.GetValue()) {
					labels[l.GetName()] = append(labels[l.GetName()], l.GetValue())
				}
			}
		}
		for _, n := range names {
			out[n] = labels
		}
	}
	return out, fams
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// alertExprs are the expressions of alerts.yml.
func alertExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), alertsFile))
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &f))
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Expr, "alert %s has no expr", r.Alert)
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// dashboard is the part of the Grafana JSON the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d), "%s is not valid JSON", dashboardFile)
	return d
}

func TestDashboardIsWellFormed(t *testing.T) {
	d := readDashboard(t)
	require.NotEmpty(t, d.UID)
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	})
	require.True(t, hasDS, "no datasource variable: the dashboard would be bound to one Prometheus")
	ids := map[int]string{}
	graphs := 0
	for _, p := range d.Panels {
		require.NotContains(t, ids, p.ID, "panel id %d used by %q and %q", p.ID, ids[p.ID], p.Title)
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		graphs++
		require.NotNil(t, p.Datasource, p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.Regexp(t, metricName, tg.Expr, "panel %q queries no relay metric", p.Title)
		}
	}
	require.GreaterOrEqual(t, graphs, 10)
}

// TestAlertsAndDashboardUseExportedMetrics compares every metric name (and
// every label of a selector, and the value of each = matcher) in alerts.yml
// and the dashboard with a real relay's /metrics.
func TestAlertsAndDashboardUseExportedMetrics(t *testing.T) {
	got := scrapeRelay(t)
	var allowed []string
	for _, name := range addedThisRound {
		if got.hasValue(name) {
			t.Logf("%s is exported now: remove it from addedThisRound", name)
			continue
		}
		allowed = append(allowed, name)
	}

	var exprs []string
	exprs = append(exprs, alertExprs(t)...)
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	// Annotations and descriptions name metrics for operators, too.
	alertsText, err := os.ReadFile(filepath.Join(repoRoot(t), alertsFile))
	require.NoError(t, err)
	dashText, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	require.NoError(t, err)

	for _, src := range []struct{ file, text string }{{alertsFile, string(alertsText)}, {dashboardFile, string(dashText)}} {
		for _, name := range metricName.FindAllString(src.text, -1) {
			if slices.Contains(allowed, name) {
				continue
			}
			require.True(t, got.hasValue(name), "%s names %s, which the relay does not export", src.file, name)
		}
	}
	for _, expr := range exprs {
		for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
			name := sel[1]
			if slices.Contains(allowed, name) {
				continue
			}
			for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
				label, op, value := m[1], m[2], m[3]
				values, ok := got[name][label]
				require.True(t, ok, "%s: %s has no label %q", expr, name, label)
				if op == "=" {
					require.Contains(t, values, value, "%s: %s{%s} never takes the value %q", expr, name, label, value)
				}
			}
		}
	}
	require.NotEmpty(t, exprs)
}

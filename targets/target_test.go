package targets

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/event"
)

func TestTableMatch(t *testing.T) {
	all := testTarget("all", "http://a.example/")
	msgs := testTarget("msgs", "http://b.example/")
	msgs.Events = []event.Kind{event.KindMsg}
	states := testTarget("states-raw", "http://c.example/")
	states.Events = []event.Kind{event.KindMsgState, event.KindRaw}
	both := testTarget("both", "https://d.example/")
	both.Events = []event.Kind{event.KindMsg, event.KindMsgState}

	table, err := NewTable([]Target{all, msgs, states, both})
	require.NoError(t, err)
	require.Equal(t, []string{"all", "msgs", "states-raw", "both"}, table.Names())

	tests := []struct {
		kind event.Kind
		want []string
	}{
		{event.KindMsg, []string{"all", "msgs", "both"}},
		{event.KindMsgState, []string{"all", "states-raw", "both"}},
		// raw goes only to targets listing raw or listing nothing
		{event.KindRaw, []string{"all", "states-raw"}},
		// a kind nobody lists goes to the unfiltered targets
		{event.Kind("future"), []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			require.Equal(t, tt.want, table.Match(tt.kind, ""))
		})
	}

	t.Run("result is the caller's", func(t *testing.T) {
		got := table.Match(event.KindMsg, "")
		got[0] = "mutated"
		require.Equal(t, []string{"all", "msgs", "both"}, table.Match(event.KindMsg, ""))
	})

	t.Run("no target matches", func(t *testing.T) {
		only := testTarget("only", "http://x.example/")
		only.Events = []event.Kind{event.KindMsg}
		tb, err := NewTable([]Target{only})
		require.NoError(t, err)
		require.Empty(t, tb.Match(event.KindRaw, ""))
	})
}

func TestTableMatchByChannel(t *testing.T) {
	all := testTarget("all", "http://a.example/")
	sales := testTarget("sales-crm", "http://b.example/")
	sales.Channels = []string{"sales"}
	def := testTarget("default-bot", "http://c.example/")
	def.Channels = []string{"default"}
	def.Events = []event.Kind{event.KindMsg}
	table, err := NewTable([]Target{all, sales, def})
	require.NoError(t, err)

	tests := []struct {
		kind    event.Kind
		channel string
		want    []string
	}{
		{event.KindMsg, "", []string{"all", "default-bot"}},
		{event.KindMsg, "default", []string{"all", "default-bot"}},
		{event.KindMsg, "sales", []string{"all", "sales-crm"}},
		{event.KindMsgState, "sales", []string{"all", "sales-crm"}},
		{event.KindMsgState, "default", []string{"all"}},
		{event.KindMsg, "tg", []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"@"+tt.channel, func(t *testing.T) {
			require.Equal(t, tt.want, table.Match(tt.kind, tt.channel))
		})
	}
}

func TestNewTableRejects(t *testing.T) {
	const secretValue = "hdr-value-do-not-print"
	ok := func() Target {
		tg := testTarget("crm", "https://crm.example/hook")
		tg.Headers = map[string]string{"Authorization": secretValue}
		return tg
	}
	tests := []struct {
		name    string
		mutate  func(*Target)
		wantErr string
	}{
		{"empty name", func(t *Target) { t.Name = " " }, "name: must not be empty"},
		{"missing url", func(t *Target) { t.URL = "" }, `target "crm": url: must not be empty`},
		{"relative url", func(t *Target) { t.URL = "/hook" }, "scheme must be http or https"},
		{"ftp url", func(t *Target) { t.URL = "ftp://x.example/" }, "scheme must be http or https"},
		{"no host", func(t *Target) { t.URL = "http:///path" }, "host must not be empty"},
		{"unparseable url keeps its query secret", func(t *Target) { t.URL = "http://x.example/%zz?token=" + secretValue }, "url: not a valid URL"},
		{"zero timeout", func(t *Target) { t.Timeout = 0 }, "timeout: must be > 0"},
		{"zero max attempts", func(t *Target) { t.MaxAttempts = 0 }, "max_attempts: must be > 0"},
		{"unknown kind", func(t *Target) { t.Events = []event.Kind{"message"} }, `unknown kind "message"`},
		{"bad header name", func(t *Target) { t.Headers["Bad Name"] = "x" }, `invalid header name "Bad Name"`},
		{"reserved header", func(t *Target) { t.Headers["Webhook-Signature"] = "x" }, `"Webhook-Signature" is set by the relay`},
		{"header value with newline", func(t *Target) { t.Headers["Authorization"] = secretValue + "\r\nX: y" }, `value of "Authorization" contains a line break`},
		{"secret without prefix", func(t *Target) { t.SigningSecret = secretValue }, `signing_secret: must start with "whsec_"`},
		{"secret not base64", func(t *Target) { t.SigningSecret = "whsec_" + secretValue }, "signing_secret: the part after \"whsec_\" is not valid base64"},
		{"empty secret key", func(t *Target) { t.SigningSecret = "whsec_" }, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := ok()
			tt.mutate(&tg)
			_, err := NewTable([]Target{tg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), secretValue)
		})
	}

	t.Run("duplicate name", func(t *testing.T) {
		_, err := NewTable([]Target{ok(), ok()})
		require.ErrorContains(t, err, `targets[1]: name "crm": duplicate`)
	})
}

func TestEmptyTableMatchesNothing(t *testing.T) {
	tbl, err := NewTable(nil)
	require.NoError(t, err, "no targets is valid: events are stored and delivered nowhere")
	for _, k := range []event.Kind{event.KindMsg, event.KindMsgState, event.KindRaw} {
		require.Empty(t, tbl.Match(k, ""))
	}
	require.Empty(t, tbl.Names())
}

func TestTargetStringHidesSecrets(t *testing.T) {
	tg := Target{
		Name: "crm", URL: "https://crm.example/?token=url-secret",
		Headers:       map[string]string{"Authorization": "Bearer hdr-secret"},
		SigningSecret: "whsec_c2lnbmluZy1zZWNyZXQ=", Timeout: time.Second, MaxAttempts: 1,
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := sprintf(format, tg)
		require.NotContains(t, s, "hdr-secret", format)
		require.NotContains(t, s, "c2lnbmluZy1zZWNyZXQ", format)
		require.NotContains(t, s, "url-secret", format)
	}
}

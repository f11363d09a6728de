package wammfake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// receiver is a webhook endpoint answering with status(n, body) for the n-th
// request (from 1) and recording every request.
type receiver struct {
	srv    *httptest.Server
	status func(n int, body []byte) int

	mu     sync.Mutex
	bodies [][]byte
	times  []time.Time
	ctype  []string
}

func newReceiver(t *testing.T, status func(n int, body []byte) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.times = append(r.times, time.Now())
		r.ctype = append(r.ctype, req.Header.Get("Content-Type"))
		n := len(r.bodies)
		r.mu.Unlock()
		code := http.StatusOK
		if r.status != nil {
			code = r.status(n, body)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) arrivals() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.times...)
}

func (r *receiver) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// start runs the account's sender until the test ends.
func start(t *testing.T, a *Account) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func flush(t *testing.T, a *Account) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Flush(ctx))
}

func TestWebhooksInOrderAndShape(t *testing.T) {
	rcv := newReceiver(t, nil)
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, Now: fixedNow, RetryBackoff: time.Millisecond})
	start(t, a)

	in := a.Receive("79001234567", "Good afternoon, I'm interested in your offer")
	out := a.SendOut("79001234567", "Hello <b>&</b>")
	require.NoError(t, a.SetState(out.ID, "delivered"))
	require.NoError(t, a.SetState(out.ID, "not sent"))
	flush(t, a)

	bodies := rcv.got()
	require.Len(t, bodies, 4)
	require.Equal(t, `{"tip":"msg","msg_data":{"msg_id":1000000,"qoute_msg_id":null,"from_api":0,"from_me":0,`+
		`"phone_acc":"79990000000","phone":"79001234567","chat_name":"Contact 79001234567","tip_msg":"textMessage",`+
		`"msg_text":"Good afternoon, I'm interested in your offer","msg_link":null,"date_ins":"2023-05-24 19:50:15",`+
		`"state":"received","senderId":null,"senderName":null}}`, string(bodies[0]))
	require.Equal(t, `{"tip":"msg","msg_data":{"msg_id":1000001,"qoute_msg_id":null,"from_api":1,"from_me":1,`+
		`"phone_acc":"79990000000","phone":"79001234567","chat_name":"Contact 79001234567","tip_msg":"textMessage",`+
		`"msg_text":"Hello <b>&</b>","msg_link":null,"date_ins":"2023-05-24 19:50:15",`+
		`"state":"sent","senderId":null,"senderName":null}}`, string(bodies[1]))
	require.Equal(t, `{"tip":"msg_state","msg_data":{"msg_id":1000001,"from_me":1,"phone":"79001234567","state":"delivered","date_upd":"2023-05-24 19:50:15"}}`, string(bodies[2]))
	require.Equal(t, `{"tip":"msg_state","msg_data":{"msg_id":1000001,"from_me":1,"phone":"79001234567","state":"not sent","date_upd":"2023-05-24 19:50:15"}}`, string(bodies[3]))
	rcv.mu.Lock()
	require.Equal(t, "application/json", rcv.ctype[0])
	rcv.mu.Unlock()

	require.Equal(t, "1000000", in.ID)
	m, ok := a.Message(out.ID)
	require.True(t, ok)
	require.Equal(t, "not sent", m.State)

	st := a.Stats()
	require.Equal(t, Stats{Messages: 2, StateChanges: 2, WebhooksSent: 4, WebhookAttempts: 4}, st)
	for i, w := range a.Webhooks() {
		require.Equal(t, i+1, w.Seq)
		require.Equal(t, WebhookSent, w.Status)
		require.Equal(t, 1, w.Attempts)
		require.Equal(t, string(bodies[i]), string(w.Body))
	}
}

func TestVendorExampleKeys(t *testing.T) {
	// The msg webhook has exactly the keys of the vendor example, in order.
	a := New(Options{Token: token, WebhookURL: "http://127.0.0.1:1/unused", Now: fixedNow})
	a.Receive("7", "x")
	var env struct {
		MsgData json.RawMessage `json:"msg_data"`
	}
	require.NoError(t, json.Unmarshal(a.Webhooks()[0].Body, &env))
	dec := json.NewDecoder(bytes.NewReader(env.MsgData))
	_, err := dec.Token() // {
	require.NoError(t, err)
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, k.(string))
		var v json.RawMessage
		require.NoError(t, dec.Decode(&v))
	}
	require.Equal(t, []string{"msg_id", "qoute_msg_id", "from_api", "from_me", "phone_acc", "phone", "chat_name",
		"tip_msg", "msg_text", "msg_link", "date_ins", "state", "senderId", "senderName"}, keys)
}

func TestWebhookRetriedUntilAccepted(t *testing.T) {
	// The receiver fails twice, then accepts: three attempts, in order, with
	// growing intervals, and the next webhook waits for the first.
	const backoff = 20 * time.Millisecond
	rcv := newReceiver(t, func(n int, _ []byte) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, RetryBackoff: backoff})
	start(t, a)
	first := a.Receive("7", "one")
	a.Receive("7", "two")
	flush(t, a)

	bodies := rcv.got()
	require.Len(t, bodies, 4)
	for i := range 3 {
		require.Contains(t, string(bodies[i]), `"msg_id":`+first.ID, "attempt %d is the first webhook", i+1)
	}
	require.Contains(t, string(bodies[3]), `"msg_text":"two"`)
	at := rcv.arrivals()
	require.GreaterOrEqual(t, at[1].Sub(at[0]), backoff)
	require.GreaterOrEqual(t, at[2].Sub(at[1]), 2*backoff, "intervals grow")

	wh := a.Webhooks()
	require.Equal(t, WebhookSent, wh[0].Status)
	require.Equal(t, 3, wh[0].Attempts)
	require.Equal(t, "", wh[0].LastError)
	require.Equal(t, 1, wh[1].Attempts)
	st := a.Stats()
	require.Equal(t, 2, st.WebhooksSent)
	require.Equal(t, 4, st.WebhookAttempts)
	require.Zero(t, st.WebhooksFailed)
}

func TestWebhookGivenUpAfterSixAttempts(t *testing.T) {
	rcv := newReceiver(t, func(_ int, body []byte) int {
		if bytes.Contains(body, []byte(`"doomed"`)) {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, RetryBackoff: time.Millisecond})
	start(t, a)
	doomed := a.Receive("7", "doomed")
	a.Receive("7", "fine")
	flush(t, a)

	require.Len(t, rcv.got(), MaxAttempts+1)
	failed := a.Failed()
	require.Len(t, failed, 1)
	require.Equal(t, doomed.ID, failed[0].MsgID)
	require.Equal(t, MaxAttempts, failed[0].Attempts)
	require.Equal(t, "http 500", failed[0].LastError)
	st := a.Stats()
	require.Equal(t, 1, st.WebhooksFailed)
	require.Equal(t, 1, st.WebhooksSent)
	require.Equal(t, MaxAttempts+1, st.WebhookAttempts)
}

func TestOnly200IsSuccess(t *testing.T) {
	rcv := newReceiver(t, func(n int, _ []byte) int {
		if n == 1 {
			return http.StatusNoContent
		}
		return http.StatusOK
	})
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, RetryBackoff: time.Millisecond})
	start(t, a)
	a.Receive("7", "x")
	flush(t, a)
	require.Equal(t, 2, a.Webhooks()[0].Attempts, "WAMM wants HTTP 200; a 204 is retried")
}

func TestDroppedWebhooksAreNeverSent(t *testing.T) {
	rcv := newReceiver(t, nil)
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL})
	start(t, a)
	a.Receive("7", "kept 1")
	a.DropNext(2)
	lost1 := a.Receive("7", "lost 1")
	lost2 := a.SendOut("7", "lost 2")
	require.NoError(t, a.SetState(lost2.ID, "delivered")) // sent again
	flush(t, a)

	dropped := a.Dropped()
	require.Len(t, dropped, 2)
	require.Equal(t, []string{lost1.ID, lost2.ID}, []string{dropped[0].MsgID, dropped[1].MsgID})
	require.Equal(t, "msg", dropped[1].Tip)
	for _, b := range rcv.got() {
		require.NotContains(t, string(b), `"msg_text":"lost`)
	}
	require.Len(t, rcv.got(), 2)
	require.Equal(t, 2, a.Stats().WebhooksDropped)
	require.Len(t, a.Messages(), 3, "dropped webhooks still leave their messages in the API")
}

func TestDropRate(t *testing.T) {
	rcv := newReceiver(t, nil)
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, DropRate: 0.5, Rand: rand.New(rand.NewPCG(7, 7))})
	start(t, a)
	for range 200 {
		a.Receive("7", "x")
	}
	flush(t, a)
	st := a.Stats()
	require.Equal(t, 200, st.WebhooksDropped+st.WebhooksSent)
	require.InDelta(t, 100, st.WebhooksDropped, 30)
	require.Len(t, rcv.got(), st.WebhooksSent)

	all := New(Options{Token: token, WebhookURL: rcv.srv.URL, DropRate: 1})
	all.Receive("7", "x")
	require.Equal(t, 1, all.Stats().WebhooksDropped)
	<-all.Idle() // nothing queued: already idle
}

func TestNoWebhookURL(t *testing.T) {
	a := New(Options{Token: token})
	a.Receive("7", "x")
	require.Equal(t, WebhookDisabled, a.Webhooks()[0].Status)
	<-a.Idle()

	rcv := newReceiver(t, nil)
	a.SetWebhookURL(rcv.srv.URL)
	start(t, a)
	a.Receive("7", "y")
	flush(t, a)
	require.Len(t, rcv.got(), 1)
}

func TestSetState(t *testing.T) {
	a := New(Options{Token: token})
	m := a.SendOut("7", "x")
	require.Error(t, a.SetState("999", "viewed"))
	require.NoError(t, a.SetState(m.ID, "sent"), "same state: no-op")
	require.Len(t, a.Webhooks(), 1)
	require.Zero(t, a.Stats().StateChanges)
}

func TestStopMidRetryKeepsWebhookQueued(t *testing.T) {
	rcv := newReceiver(t, func(n int, _ []byte) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	a := New(Options{Token: token, WebhookURL: rcv.srv.URL, RetryBackoff: time.Hour})
	a.Receive("7", "x")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return a.Stats().WebhookAttempts == 1 }, 5*time.Second, time.Millisecond)
	cancel() // while waiting an hour for the retry
	require.NoError(t, <-done)
	require.Equal(t, WebhookQueued, a.Webhooks()[0].Status)

	// DeliverNext, the loop's step, picks it up again; the backoff applies
	// between attempts of one call only.
	a.opts.RetryBackoff = time.Millisecond
	more, err := a.DeliverNext(context.Background())
	require.NoError(t, err)
	require.True(t, more)
	require.Equal(t, WebhookSent, a.Webhooks()[0].Status)
	more, err = a.DeliverNext(context.Background())
	require.NoError(t, err)
	require.False(t, more)
	<-a.Idle()
}

func TestTraffic(t *testing.T) {
	a := New(Options{Token: token, Chats: []string{"1", "2"}})
	for range 200 {
		a.TrafficStep()
	}
	st := a.Stats()
	require.Positive(t, st.Messages)
	require.Positive(t, st.StateChanges)
	var in, out int
	for _, m := range a.Messages() {
		require.Contains(t, []string{"1", "2"}, m.Phone)
		if m.FromMe == 1 {
			out++
			require.Contains(t, []string{"sent", "delivered", "viewed"}, m.State)
		} else {
			in++
			require.Equal(t, "received", m.State)
		}
	}
	require.Positive(t, in)
	require.Positive(t, out)
	require.Equal(t, st.Messages+st.StateChanges, len(a.Webhooks()))
}

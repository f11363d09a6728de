package wammfake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultRetryBackoff   = time.Second
	DefaultWebhookTimeout = 10 * time.Second // WAMM gives a receiver at most 10 s
	DefaultPhoneAcc       = "79990000000"
	DefaultFirstID        = 1000000
	// MaxAttempts is how often WAMM tries one webhook: once, then up to 5
	// retries.
	MaxAttempts = 6
	// DateLayout is how WAMM writes date_ins and date_upd (no time zone).
	DateLayout = "2006-01-02 15:04:05"
)

// DefaultChats are the phones used when Options.Chats is empty.
var DefaultChats = []string{"79001234567", "79007654321", "79005550101"}

// Options configures an Account.
type Options struct {
	// Token is the channel token the API accepts (required).
	Token string
	// WebhookURL receives the webhooks; empty means none are queued until
	// SetWebhookURL is called.
	WebhookURL string
	// DropRate is the fraction (0..1) of webhooks never sent at all, chosen
	// with Rand. DropNext drops deterministically instead.
	DropRate float64
	// Rand drives DropRate and TrafficStep; default a fixed seed, so runs
	// repeat. Used under the account's lock only.
	Rand *rand.Rand
	// Now stamps date_ins and date_upd; default time.Now. Dates are written
	// in Now's location.
	Now func() time.Time
	// Client posts the webhooks; default a client with WebhookTimeout.
	Client *http.Client
	// RetryBackoff is the first interval between webhook attempts; each next
	// one doubles (b, 2b, 4b, 8b, 16b). Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// WebhookTimeout bounds each webhook attempt; default DefaultWebhookTimeout.
	WebhookTimeout time.Duration
	// Chats are the contacts TrafficStep talks to; default DefaultChats.
	Chats []string
	// ChatNames maps a phone to its chat_name; default "Contact <phone>".
	ChatNames map[string]string
	// PhoneAcc is the channel's own number, sent as phone_acc in webhooks.
	PhoneAcc string
	// FirstID is the first msg_id; ids then grow by one. Default DefaultFirstID.
	FirstID int64
}

func (o *Options) validate() error {
	switch {
	case o.Token == "":
		return fmt.Errorf("wammfake options: Token is empty")
	case o.DropRate < 0 || o.DropRate > 1 || o.DropRate != o.DropRate:
		return fmt.Errorf("wammfake options: DropRate %v is outside 0..1", o.DropRate)
	case o.RetryBackoff < 0:
		return fmt.Errorf("wammfake options: RetryBackoff is negative")
	case o.WebhookTimeout < 0:
		return fmt.Errorf("wammfake options: WebhookTimeout is negative")
	case o.FirstID < 0:
		return fmt.Errorf("wammfake options: FirstID is negative")
	}
	return nil
}

// Message is a message held by the fake account.
type Message struct {
	ID       string // decimal msg_id
	FromMe   int    // 0 incoming, 1 outgoing
	FromAPI  int    // 1 for SendOut (a message sent through msg_to)
	Phone    string
	ChatName string
	TipMsg   string
	Text     string
	State    string
	DateIns  string
	DateUpd  string
}

// WebhookStatus is where a webhook stands.
type WebhookStatus string

// Webhook statuses.
const (
	WebhookQueued   WebhookStatus = "queued"
	WebhookSent     WebhookStatus = "sent"    // a 200 on some attempt
	WebhookDropped  WebhookStatus = "dropped" // never sent (DropRate, DropNext)
	WebhookFailed   WebhookStatus = "failed"  // all MaxAttempts failed; given up
	WebhookDisabled WebhookStatus = "unsent"  // no WebhookURL when it happened
)

// Webhook is one webhook the account produced.
type Webhook struct {
	Seq       int    // 1, 2, ... in the order the events happened
	Tip       string // "msg" or "msg_state"
	MsgID     string
	State     string
	Body      []byte
	Status    WebhookStatus
	Attempts  int
	LastError string
}

// Stats counts what the account did.
type Stats struct {
	Messages        int // messages created
	StateChanges    int // SetState calls that changed a state
	WebhooksSent    int
	WebhooksDropped int
	WebhooksFailed  int // gave up after MaxAttempts
	WebhookAttempts int
	APICalls        int // requests to the API handler
	APIErrors       int // of which answered with an error (err string or status)
}

// APIFailure makes the API fail. With Status set the handler answers with
// that HTTP status (and {"err":Err} as the body when Err is set); otherwise
// with HTTP 200 and {"err":Err}. Calls is how many requests fail; 0 means
// until ClearAPIFailure.
type APIFailure struct {
	Err    string
	Status int
	Calls  int
}

// Account is a fake WAMM channel. All methods are safe for concurrent use.
type Account struct {
	opts   Options
	client *http.Client
	sendMu sync.Mutex // one webhook in flight at a time, like WAMM

	mu         sync.Mutex
	nextID     int64
	messages   []*Message // creation order; ids grow
	byID       map[string]*Message
	webhookURL string
	webhooks   []*Webhook
	queue      []*Webhook // head stays until finished, so empty means idle
	idle       chan struct{}
	dropNext   int
	failure    *APIFailure
	stats      Stats
	wake       chan struct{}
	channel    Channel // what channel_list reports; zero fields take defaults
}

// New builds an Account. It panics if opts are invalid (like
// httptest.NewServer, it is a test fixture).
func New(opts Options) *Account {
	if err := opts.validate(); err != nil {
		panic(err)
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RetryBackoff == 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	if opts.WebhookTimeout == 0 {
		opts.WebhookTimeout = DefaultWebhookTimeout
	}
	if len(opts.Chats) == 0 {
		opts.Chats = DefaultChats
	}
	if opts.PhoneAcc == "" {
		opts.PhoneAcc = DefaultPhoneAcc
	}
	if opts.FirstID == 0 {
		opts.FirstID = DefaultFirstID
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: opts.WebhookTimeout}
	}
	return &Account{
		opts:       opts,
		client:     client,
		nextID:     opts.FirstID,
		byID:       map[string]*Message{},
		webhookURL: opts.WebhookURL,
		wake:       make(chan struct{}, 1),
	}
}

// Receive records a new incoming message (from_me 0, state "received") and
// queues its msg webhook.
func (a *Account) Receive(phone, text string) Message {
	return a.add(phone, text, 0)
}

// SendOut records a new outgoing message sent through the API (from_me 1,
// from_api 1, state "sent") and queues its msg webhook.
func (a *Account) SendOut(phone, text string) Message {
	return a.add(phone, text, 1)
}

func (a *Account) add(phone, text string, fromMe int) Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opts.Now().Format(DateLayout)
	m := &Message{
		ID:       strconv.FormatInt(a.nextID, 10),
		FromMe:   fromMe,
		FromAPI:  fromMe,
		Phone:    phone,
		ChatName: a.chatName(phone),
		TipMsg:   "textMessage",
		Text:     text,
		State:    "received",
		DateIns:  now,
		DateUpd:  now,
	}
	if fromMe == 1 {
		m.State = "sent"
	}
	a.nextID++
	a.messages = append(a.messages, m)
	a.byID[m.ID] = m
	a.stats.Messages++
	a.enqueueLocked("msg", m, msgWebhookBody(m, a.opts.PhoneAcc))
	return *m
}

// SetState changes a message's state (and date_upd) and queues a msg_state
// webhook. Setting the state it already has does nothing.
func (a *Account) SetState(msgID, state string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.byID[msgID]
	if !ok {
		return fmt.Errorf("set state: no message %q", msgID)
	}
	if m.State == state {
		return nil
	}
	m.State = state
	m.DateUpd = a.opts.Now().Format(DateLayout)
	a.stats.StateChanges++
	a.enqueueLocked("msg_state", m, stateWebhookBody(m))
	return nil
}

func (a *Account) chatName(phone string) string {
	if n, ok := a.opts.ChatNames[phone]; ok {
		return n
	}
	return "Contact " + phone
}

func (a *Account) enqueueLocked(tip string, m *Message, body []byte) {
	w := &Webhook{Seq: len(a.webhooks) + 1, Tip: tip, MsgID: m.ID, State: m.State, Body: body, Status: WebhookQueued}
	a.webhooks = append(a.webhooks, w)
	switch {
	case a.webhookURL == "":
		w.Status = WebhookDisabled
		return
	case a.dropNext > 0:
		a.dropNext--
		w.Status = WebhookDropped
	case a.opts.DropRate > 0 && a.opts.Rand.Float64() < a.opts.DropRate:
		w.Status = WebhookDropped
	}
	if w.Status == WebhookDropped {
		a.stats.WebhooksDropped++
		return
	}
	a.queue = append(a.queue, w)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// DropNext makes the next n webhooks be dropped (never sent), whatever
// DropRate says.
func (a *Account) DropNext(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropNext = n
}

// SetWebhookURL sets where webhooks go from now on (also for queued ones).
func (a *Account) SetWebhookURL(u string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.webhookURL = u
}

// SetAPIFailure makes the API fail as f says, replacing any earlier failure.
func (a *Account) SetAPIFailure(f APIFailure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failure = &f
}

// ClearAPIFailure makes the API answer normally again.
func (a *Account) ClearAPIFailure() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failure = nil
}

// Message returns the message with the id.
func (a *Account) Message(id string) (Message, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.byID[id]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Messages returns every message, oldest first.
func (a *Account) Messages() []Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Message, len(a.messages))
	for i, m := range a.messages {
		out[i] = *m
	}
	return out
}

// Webhooks returns every webhook produced so far, in order.
func (a *Account) Webhooks() []Webhook {
	return a.webhooksWhere(func(*Webhook) bool { return true })
}

// Dropped returns the webhooks that were never sent (DropRate, DropNext).
func (a *Account) Dropped() []Webhook {
	return a.webhooksWhere(func(w *Webhook) bool { return w.Status == WebhookDropped })
}

// Failed returns the webhooks given up on after MaxAttempts.
func (a *Account) Failed() []Webhook {
	return a.webhooksWhere(func(w *Webhook) bool { return w.Status == WebhookFailed })
}

func (a *Account) webhooksWhere(keep func(*Webhook) bool) []Webhook {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Webhook
	for _, w := range a.webhooks {
		if keep(w) {
			c := *w
			c.Body = bytes.Clone(w.Body)
			out = append(out, c)
		}
	}
	return out
}

// Stats returns the counters.
func (a *Account) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Idle returns a channel that is closed once no webhook is queued or in
// flight (already closed if that is so now). Webhooks queued later need a
// fresh call. It only fires while Run (or DeliverNext) drains the queue.
func (a *Account) Idle() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if a.idle == nil {
		a.idle = make(chan struct{})
	}
	return a.idle
}

// Flush waits until the webhook queue is drained, or ctx is done.
func (a *Account) Flush(ctx context.Context) error {
	select {
	case <-a.Idle():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush webhooks: %w", ctx.Err())
	}
}

// msgData is the vendor's msg example, key for key and in its order.
type msgData struct {
	MsgID      int64   `json:"msg_id"`
	QouteMsgID *int64  `json:"qoute_msg_id"` // sic, WAMM's spelling
	FromAPI    int     `json:"from_api"`
	FromMe     int     `json:"from_me"`
	PhoneAcc   string  `json:"phone_acc"`
	Phone      string  `json:"phone"`
	ChatName   string  `json:"chat_name"`
	TipMsg     string  `json:"tip_msg"`
	MsgText    string  `json:"msg_text"`
	MsgLink    *string `json:"msg_link"`
	DateIns    string  `json:"date_ins"`
	State      string  `json:"state"`
	SenderID   *string `json:"senderId"`
	SenderName *string `json:"senderName"`
}

func msgWebhookBody(m *Message, phoneAcc string) []byte {
	id, _ := strconv.ParseInt(m.ID, 10, 64)
	return marshal(struct {
		Tip     string  `json:"tip"`
		MsgData msgData `json:"msg_data"`
	}{"msg", msgData{
		MsgID: id, FromAPI: m.FromAPI, FromMe: m.FromMe, PhoneAcc: phoneAcc, Phone: m.Phone,
		ChatName: m.ChatName, TipMsg: m.TipMsg, MsgText: m.Text, DateIns: m.DateIns, State: m.State,
	}})
}

// stateWebhookBody is the msg_state shape the relay expects; WAMM does not
// document it (wamm-api.md §2.4).
func stateWebhookBody(m *Message) []byte {
	id, _ := strconv.ParseInt(m.ID, 10, 64)
	return marshal(struct {
		Tip     string    `json:"tip"`
		MsgData stateData `json:"msg_data"`
	}{"msg_state", stateData{MsgID: id, FromMe: m.FromMe, Phone: m.Phone, State: m.State, DateUpd: m.DateUpd}})
}

type stateData struct {
	MsgID   int64  `json:"msg_id"`
	FromMe  int    `json:"from_me"`
	Phone   string `json:"phone"`
	State   string `json:"state"`
	DateUpd string `json:"date_upd"`
}

func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // plain structs of strings and numbers always encode
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

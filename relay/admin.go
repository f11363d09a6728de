package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Admin API limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// MaxReplayIDs caps the ids of one replay request.
	MaxReplayIDs       = 10000
	maxAdminBodyBytes  = 1 << 20
	adminStoreErrorMsg = "store unavailable"
)

func (s *Server) routeAdmin(g *gin.RouterGroup) {
	g.GET("/deliveries", s.handleListDeliveries)
	g.POST("/deliveries/replay", s.handleReplay)
	g.GET("/targets", s.handleTargets)
	s.routeTargetControl(g)
	s.routeGaps(g)
	g.GET("/deliveries/:id", s.handleGetDelivery)
	g.GET("/overview", s.handleOverview)
}

// requireAdmin checks "Authorization: Bearer <token>" in constant time.
func (s *Server) requireAdmin(c *gin.Context) {
	h := c.GetHeader("Authorization")
	if h == "" && s.ui != nil {
		// The dashboard's session cookie stands in for the bearer token.
		if payload, ok := s.ui.Session(c.Request); ok {
			if !safeMethod(c.Request.Method) {
				if err := s.ui.CheckWrite(c.Request, payload); err != nil {
					s.rejectedRequest(c, endpointAdmin, http.StatusForbidden, reasonForbidden, err.Error(), "admin request rejected")
					c.AbortWithStatusJSON(http.StatusForbidden, errorBody(err.Error()))
					return
				}
			}
			c.Next()
			return
		}
	}
	if !bearerMatches(h, s.opts.AdminToken) {
		s.rejectedRequest(c, endpointAdmin, http.StatusUnauthorized, reasonUnauthorized, reasonUnauthorized, "admin request rejected")
		c.Header("WWW-Authenticate", `Bearer realm="wamm-relay"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, errorBody("missing or wrong bearer token"))
		return
	}
	c.Next()
}

type deliveryJSON struct {
	ID             int64      `json:"id"`
	Target         string     `json:"target"`
	EventKey       event.Key  `json:"event_key"`
	Kind           event.Kind `json:"kind"`
	Source         string     `json:"source"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	CreatedAt      *time.Time `json:"created_at"`
	UpdatedAt      *time.Time `json:"updated_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	LastError      string     `json:"last_error"`
	LastStatusCode int        `json:"last_status_code"`
	Channel        string     `json:"channel,omitempty"`
	Chat           string     `json:"chat,omitempty"`
	MsgID          string     `json:"msg_id,omitempty"`
}

type listResponse struct {
	Deliveries []deliveryJSON `json:"deliveries"`
	// NextBeforeID is the before_id of the next page; 0 when this page is
	// the last.
	NextBeforeID int64 `json:"next_before_id"`
}

// optTime renders a zero time as null.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) handleListDeliveries(c *gin.Context) {
	f := store.ListFilter{Target: c.Query("target"), Limit: DefaultListLimit,
		MsgID: c.Query("msg_id"), Chat: c.Query("chat"), Channel: c.Query("channel")}
	if v := c.Query("status"); v != "" {
		st := event.Status(v)
		if !st.Valid() {
			c.JSON(http.StatusBadRequest, errorBody("invalid status: must be pending, delivered or dead"))
			return
		}
		f.Status = st
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.JSON(http.StatusBadRequest, errorBody(fmt.Sprintf("invalid limit: must be an integer from 1 to %d", MaxListLimit)))
			return
		}
		f.Limit = min(n, MaxListLimit)
	}
	if v := c.Query("before_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			c.JSON(http.StatusBadRequest, errorBody("invalid before_id: must be a positive integer"))
			return
		}
		f.BeforeID = n
	}

	ds, err := s.opts.Admin.List(c.Request.Context(), f)
	if err != nil {
		s.adminStoreError(c, "list deliveries", err)
		return
	}
	resp := listResponse{Deliveries: make([]deliveryJSON, 0, len(ds))}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, toDeliveryJSON(d))
	}
	if len(ds) > 0 && len(ds) >= f.Limit {
		resp.NextBeforeID = ds[len(ds)-1].ID
	}
	c.JSON(http.StatusOK, resp)
}

type replayBody struct {
	IDs    []int64 `json:"ids"`
	Target string  `json:"target"`
	Status string  `json:"status"`
}

// parseReplay decodes and checks a replay body: ids, or status (dead or
// delivered) with an optional target, never both.
func (s *Server) parseReplay(r io.Reader) (store.ReplayRequest, error) {
	var b replayBody
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return store.ReplayRequest{}, errors.New("body too large")
		}
		return store.ReplayRequest{}, errors.New(`body must be {"ids":[...]} or {"target":"...","status":"dead"}`)
	}
	if dec.More() {
		return store.ReplayRequest{}, errors.New("body must hold one JSON object")
	}
	req := store.ReplayRequest{Now: s.opts.Now()}
	if b.IDs != nil {
		if b.Target != "" || b.Status != "" {
			return store.ReplayRequest{}, errors.New("ids and target/status are exclusive")
		}
		if len(b.IDs) == 0 {
			return store.ReplayRequest{}, errors.New("ids must not be empty")
		}
		if len(b.IDs) > MaxReplayIDs {
			return store.ReplayRequest{}, fmt.Errorf("ids: at most %d per request", MaxReplayIDs)
		}
		for _, id := range b.IDs {
			if id < 1 {
				return store.ReplayRequest{}, errors.New("ids must be positive")
			}
		}
		req.IDs = b.IDs
		return req, nil
	}
	st := event.Status(b.Status)
	if st != event.StatusDead && st != event.StatusDelivered {
		return store.ReplayRequest{}, errors.New("status must be dead or delivered (or give ids)")
	}
	if b.Target != "" && len(s.opts.Targets) > 0 && !slices.Contains(s.opts.Targets, b.Target) {
		return store.ReplayRequest{}, errors.New("unknown target")
	}
	req.Target, req.Status = b.Target, st
	return req, nil
}

func (s *Server) handleReplay(c *gin.Context) {
	req, err := s.parseReplay(http.MaxBytesReader(c.Writer, c.Request.Body, maxAdminBodyBytes))
	if err != nil {
		c.JSON(http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	n, err := s.opts.Admin.Replay(c.Request.Context(), req)
	if err != nil {
		s.adminStoreError(c, "replay deliveries", err)
		return
	}
	// An audit line: replays change what targets receive.
	s.log.WithFields(logrus.Fields{
		"client_ip": c.ClientIP(),
		"ids":       len(req.IDs),
		"target":    req.Target,
		"status":    req.Status,
		"replayed":  n,
	}).Info("deliveries.replayed")
	c.JSON(http.StatusOK, gin.H{"replayed": n})
}

type targetJSON struct {
	Name                    string     `json:"name"`
	Configured              bool       `json:"configured"`
	Pending                 int        `json:"pending"`
	Delivered               int        `json:"delivered"`
	Dead                    int        `json:"dead"`
	OldestPendingAgeSeconds float64    `json:"oldest_pending_age_seconds"`
	LastError               string     `json:"last_error"`
	LastErrorAt             *time.Time `json:"last_error_at"`
	// The gate on the instance that answers; empty for a target no longer
	// configured.
	Paused           bool       `json:"paused"`
	Breaker          string     `json:"breaker,omitempty"`
	BreakerOpenUntil *time.Time `json:"breaker_open_until,omitempty"`
	RateLimit        float64    `json:"rate_limit"`
}

func (s *Server) handleTargets(c *gin.Context) {
	stats, err := s.opts.Admin.TargetStats(c.Request.Context())
	if err != nil {
		s.adminStoreError(c, "read target stats", err)
		return
	}
	now := s.opts.Now()
	rows := mergeTargets(s.opts.Targets, stats)
	out := make([]targetJSON, 0, len(rows))
	for _, r := range rows {
		row := targetJSON{
			Name:                    r.Target,
			Configured:              r.configured,
			Pending:                 r.Pending,
			Delivered:               r.Delivered,
			Dead:                    r.Dead,
			OldestPendingAgeSeconds: oldestAge(now, r.OldestPending),
			LastError:               r.LastError,
			LastErrorAt:             optTime(r.LastErrorAt),
		}
		s.targetState(&row)
		out = append(out, row)
	}
	c.JSON(http.StatusOK, gin.H{"targets": out})
}

func (s *Server) adminStoreError(c *gin.Context, op string, err error) {
	s.log.WithError(fmt.Errorf("%s: %w", op, err)).Warn("admin request failed")
	c.JSON(http.StatusServiceUnavailable, errorBody(adminStoreErrorMsg))
}

type targetRow struct {
	store.TargetStats
	configured bool
}

// mergeTargets lists the configured targets in configured order (zeros for
// those without deliveries), then targets the store still has rows for but
// the configuration no longer names, by name.
func mergeTargets(configured []string, stats []store.TargetStats) []targetRow {
	byName := make(map[string]store.TargetStats, len(stats))
	for _, st := range stats {
		byName[st.Target] = st
	}
	rows := make([]targetRow, 0, len(configured)+len(stats))
	seen := make(map[string]bool, len(configured))
	for _, name := range configured {
		if seen[name] {
			continue
		}
		seen[name] = true
		st, ok := byName[name]
		if !ok {
			st = store.TargetStats{Target: name}
		}
		rows = append(rows, targetRow{TargetStats: st, configured: true})
	}
	var extra []targetRow
	for _, st := range stats {
		if !seen[st.Target] {
			seen[st.Target] = true
			extra = append(extra, targetRow{TargetStats: st})
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i].Target < extra[j].Target })
	return append(rows, extra...)
}

// oldestAge is the age in seconds of the oldest pending delivery; 0 when
// none is pending (or the clocks disagree).
func oldestAge(now, oldest time.Time) float64 {
	if oldest.IsZero() || !now.After(oldest) {
		return 0
	}
	return now.Sub(oldest).Seconds()
}

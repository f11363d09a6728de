package relay

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// TargetControl is what the admin API steers targets with: their gate
// state (pause, breaker, rate limit) and the durable pause switch.
type TargetControl interface {
	// TargetState is target's state on this instance; ok is false for a
	// target the dispatcher does not run.
	TargetState(target string) (state TargetState, ok bool)
	// SetPaused pauses or resumes target everywhere: durably, and on this
	// instance at once.
	SetPaused(ctx context.Context, target string, paused bool) error
}

// TargetState is a target's gate as GET /api/v1/targets shows it.
type TargetState struct {
	Paused bool
	// Breaker is closed, open or half_open.
	Breaker string
	// BreakerOpenUntil is when an open breaker lets a probe through.
	BreakerOpenUntil time.Time
	// RateLimit is requests per second; 0 is none.
	RateLimit float64
}

func (s *Server) routeTargetControl(g *gin.RouterGroup) {
	g.POST("/targets/:name/pause", func(c *gin.Context) { s.handleSetPaused(c, true) })
	g.POST("/targets/:name/resume", func(c *gin.Context) { s.handleSetPaused(c, false) })
}

func (s *Server) handleSetPaused(c *gin.Context, paused bool) {
	name := c.Param("name")
	if s.opts.TargetControl == nil {
		c.JSON(http.StatusNotImplemented, errorBody("target control is not available"))
		return
	}
	if !slices.Contains(s.opts.Targets, name) {
		c.JSON(http.StatusNotFound, errorBody("no configured target named "+name))
		return
	}
	if err := s.opts.TargetControl.SetPaused(c.Request.Context(), name, paused); err != nil {
		s.adminStoreError(c, "set target paused", err)
		return
	}
	action := "targets.resumed"
	if paused {
		action = "targets.paused"
	}
	// An audit line: a pause stops a target's deliveries on every instance.
	s.log.WithFields(logrus.Fields{"client_ip": c.ClientIP(), "target": name}).Info(action)
	c.JSON(http.StatusOK, gin.H{"target": name, "paused": paused})
}

// targetState fills a GET /api/v1/targets row's gate fields.
func (s *Server) targetState(row *targetJSON) {
	if s.opts.TargetControl == nil || !row.Configured {
		return
	}
	st, ok := s.opts.TargetControl.TargetState(row.Name)
	if !ok {
		return
	}
	row.Paused = st.Paused
	row.Breaker = st.Breaker
	row.RateLimit = st.RateLimit
	if !st.BreakerOpenUntil.IsZero() {
		t := st.BreakerOpenUntil
		row.BreakerOpenUntil = &t
	}
}

package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/wamm-relay/wamm-relay/store"
)

// GapStore is the part of the store the gaps endpoints read and write.
type GapStore interface {
	Gaps(ctx context.Context, f store.GapFilter) ([]store.Gap, error)
	ResolveGap(ctx context.Context, id int64, note string, at time.Time) (store.Gap, error)
}

// ChannelReport is one channel as /api/v1/channels shows it. Reconcile and
// Check are whatever their owners report (the reconciler's status, the
// channel_list check), rendered as JSON; nil when the channel has none.
type ChannelReport struct {
	Name        string `json:"name"`
	WebhookPath string `json:"webhook_path"`
	Reconcile   any    `json:"reconcile"`
	Check       any    `json:"check"`
}

// maxGapNote bounds the note an operator attaches when resolving a gap.
const maxGapNote = 1000

type gapJSON struct {
	ID          int64      `json:"id"`
	Channel     string     `json:"channel"`
	Chat        string     `json:"chat"`
	Reason      string     `json:"reason"`
	Direction   string     `json:"direction"`
	AfterMsgID  string     `json:"after_msg_id"`
	AfterTime   string     `json:"after_time"`
	BeforeMsgID string     `json:"before_msg_id"`
	BeforeTime  string     `json:"before_time"`
	DetectedAt  *time.Time `json:"detected_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
	Note        string     `json:"note"`
}

// GapJSON renders a gap as the admin API does (for the CLI's --json).
func GapJSON(g store.Gap) any { return toGapJSON(g) }

func toGapJSON(g store.Gap) gapJSON {
	return gapJSON{
		ID: g.ID, Channel: g.Channel, Chat: g.Chat, Reason: g.Reason, Direction: g.Direction,
		AfterMsgID: g.AfterMsgID, AfterTime: g.AfterTime, BeforeMsgID: g.BeforeMsgID, BeforeTime: g.BeforeTime,
		DetectedAt: optTime(g.DetectedAt), UpdatedAt: optTime(g.UpdatedAt), ResolvedAt: optTime(g.ResolvedAt), Note: g.Note,
	}
}

func (s *Server) routeGaps(g *gin.RouterGroup) {
	if s.opts.Gaps != nil {
		g.GET("/gaps", s.handleListGaps)
		g.POST("/gaps/:id/resolve", s.handleResolveGap)
	}
	if s.opts.ChannelReports != nil {
		g.GET("/channels", s.handleChannels)
	}
}

func (s *Server) handleListGaps(c *gin.Context) {
	f := store.GapFilter{Channel: c.Query("channel"), Limit: DefaultListLimit}
	switch c.DefaultQuery("status", "all") {
	case "open":
		f.Open = true
	case "resolved":
		f.Resolved = true
	case "all":
	default:
		c.JSON(http.StatusBadRequest, errorBody("invalid status: must be open, resolved or all"))
		return
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.JSON(http.StatusBadRequest, errorBody("invalid limit: must be a positive integer"))
			return
		}
		f.Limit = min(n, MaxListLimit)
	}
	gaps, err := s.opts.Gaps.Gaps(c.Request.Context(), f)
	if err != nil {
		s.adminStoreError(c, "list gaps", err)
		return
	}
	out := make([]gapJSON, 0, len(gaps))
	for _, g := range gaps {
		out = append(out, toGapJSON(g))
	}
	c.JSON(http.StatusOK, gin.H{"gaps": out})
}

func (s *Server) handleResolveGap(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		c.JSON(http.StatusBadRequest, errorBody("invalid gap id: must be a positive integer"))
		return
	}
	var req struct {
		Note string `json:"note"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxAdminBodyBytes))
	if err != nil {
		c.JSON(http.StatusRequestEntityTooLarge, errorBody("body too large"))
		return
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			c.JSON(http.StatusBadRequest, errorBody(`body must be {"note":"..."} or empty`))
			return
		}
	}
	if len(req.Note) > maxGapNote {
		c.JSON(http.StatusBadRequest, errorBody("note too long: at most 1000 bytes"))
		return
	}
	g, err := s.opts.Gaps.ResolveGap(c.Request.Context(), id, req.Note, s.opts.Now())
	if errors.Is(err, store.ErrNotFound) {
		c.JSON(http.StatusNotFound, errorBody("no such gap"))
		return
	}
	if err != nil {
		s.adminStoreError(c, "resolve gap", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"gap": toGapJSON(g)})
}

func (s *Server) handleChannels(c *gin.Context) {
	reports := s.opts.ChannelReports(c.Request.Context())
	if reports == nil {
		reports = []ChannelReport{}
	}
	c.JSON(http.StatusOK, gin.H{"channels": reports})
}

package relay

import (
	"fmt"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// Endpoints of wamm_relay_requests_rejected_total: the guarded routes
// other than the webhook, which has wamm_relay_webhooks_received_total.
const (
	endpointAdmin     = "admin"
	endpointDashboard = "dashboard"
	endpointMetrics   = "metrics"
)

// reasonForbidden: a dashboard session's write without its CSRF token or
// from another origin.
const reasonForbidden = "forbidden"

// rejectedRequest counts one refused request to a guarded endpoint exactly
// and logs it sampled per endpoint and status, so a client guessing tokens
// cannot flood the log. detail goes into the line's reason field.
func (s *Server) rejectedRequest(c *gin.Context, endpoint string, status int, reason, detail, msg string) {
	s.metrics.rejected.WithLabelValues(endpoint, reason).Inc()
	s.sampler.Log(fmt.Sprintf("%s %d %s", endpoint, status, reason), logrus.WarnLevel, msg, func() logrus.FieldLogger {
		return s.log.WithFields(logrus.Fields{
			"client_ip": c.ClientIP(),
			"path":      s.redactPath(c.Request.URL.Path),
			"status":    status,
			"reason":    detail,
		})
	})
}

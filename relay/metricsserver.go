package relay

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routeMetrics serves the Gatherer at /metrics on e, behind the bearer
// token when one is set.
func (s *Server) routeMetrics(e *gin.Engine) {
	h := gin.WrapH(promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	if s.opts.MetricsToken == "" {
		e.GET("/metrics", h)
		return
	}
	e.GET("/metrics", s.requireMetricsToken, h)
}

// requireMetricsToken checks "Authorization: Bearer <MetricsToken>" in
// constant time. Anyone who can reach the listener can try tokens, so a
// refusal is counted exactly and logged sampled.
func (s *Server) requireMetricsToken(c *gin.Context) {
	if !bearerMatches(c.GetHeader("Authorization"), s.opts.MetricsToken) {
		s.rejectedRequest(c, endpointMetrics, http.StatusUnauthorized, reasonUnauthorized, reasonUnauthorized, "metrics request rejected")
		c.Header("WWW-Authenticate", `Bearer realm="wamm-relay"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, errorBody("missing or wrong bearer token"))
		return
	}
	c.Next()
}

// buildMetricsServer is the http.Server of Options.MetricsListen: only
// /metrics, with the public listener's timeouts and redacted error log.
func (s *Server) buildMetricsServer() *http.Server {
	e := gin.New()
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.Use(s.accessLog(), s.recovery())
	e.NoRoute(func(c *gin.Context) { c.JSON(http.StatusNotFound, errorBody("not found")) })
	s.routeMetrics(e)
	return s.newHTTPServer(e)
}

package ginweb

import (
	"time"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/web"
)

// Unmatched is the route label of requests that no route matched, so that
// scanners probing random paths add one series, not one per path.
const Unmatched = "unmatched"

// Metrics records every request in m under its route template
// ("/api/movies/:id"), never the raw path.
func Metrics(m *web.HTTPMetrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = Unmatched
		}
		m.Observe(route, c.Request.Method, c.Writer.Status(), time.Since(start).Seconds())
	}
}

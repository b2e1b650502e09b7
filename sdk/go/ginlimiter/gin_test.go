package ginlimiter_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
	"github.com/viva-ratelimit/viva-ratelimit/sdk/go/ginlimiter"
	"github.com/viva-ratelimit/viva-ratelimit/sdk/go/internal/contract"
)

// TestContract runs the contract's middleware vectors through a real Gin engine served over
// HTTP, against real sidecar processes (memory and Redis stores).
func TestContract(t *testing.T) {
	gin.SetMode(gin.TestMode)
	contract.Run(t, contract.Options{Frameworks: map[string]contract.Framework{
		"gin": func(c *ratelimiter.Client, mw contract.MiddlewareSettings) http.Handler {
			router := gin.New()
			router.Use(ginlimiter.Middleware(c, mw.Namespace, ginlimiter.Hits(mw.Hits),
				ginlimiter.Identify(func(g *gin.Context) string { return g.GetHeader(mw.IdentifierHeader) })))
			router.NoRoute(func(g *gin.Context) { g.String(http.StatusOK, "ok") })
			return router
		},
	}})
}

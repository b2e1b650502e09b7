// Package ginlimiter is the Gin middleware of the Viva rate-limit sidecar's Go client
// (package ratelimiter). It is a module of its own so that the client stays free of
// third-party dependencies.
//
//	client := ratelimiter.New("localhost:8080")
//	router := gin.Default()
//	router.Use(ginlimiter.Middleware(client, "api_requests"))
package ginlimiter

import (
	"github.com/gin-gonic/gin"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
)

// Option configures Middleware.
type Option func(*config)

type config struct {
	identify  func(*gin.Context) string
	namespace func(*gin.Context) string
	hits      int
	families  ratelimiter.HeaderFamily
	onError   func(*gin.Context, error)
}

// Identify sets how a request is identified (default: Gin's ClientIP, which honours the
// engine's trusted proxies): typically a user id or an API key. An empty identifier lets the
// request through unchecked.
func Identify(fn func(c *gin.Context) string) Option {
	return func(cfg *config) { cfg.identify = fn }
}

// NamespaceFunc chooses the namespace per request instead of the fixed one.
func NamespaceFunc(fn func(c *gin.Context) string) Option {
	return func(cfg *config) { cfg.namespace = fn }
}

// Hits sets the hits charged per request (default 1).
func Hits(n int) Option {
	return func(cfg *config) { cfg.hits = n }
}

// SendHeaders chooses the rate-limit header families added to responses (default
// ratelimiter.AllHeaders; 0 for none).
func SendHeaders(families ratelimiter.HeaderFamily) Option {
	return func(cfg *config) { cfg.families = families }
}

// OnError is called with every error of a check, for logging; the failure mode still decides.
func OnError(fn func(c *gin.Context, err error)) Option {
	return func(cfg *config) { cfg.onError = fn }
}

// Middleware checks every request with client before the handlers run: refused requests are
// aborted with 429, Retry-After, the rate-limit headers and {"error": "rate limit exceeded",
// "retry_after_seconds": N}; allowed ones go on with the headers set; when the sidecar cannot
// decide, the client's failure mode lets them through or aborts with 503 (ratelimiter.Judge).
func Middleware(client *ratelimiter.Client, namespace string, opts ...Option) gin.HandlerFunc {
	cfg := config{identify: (*gin.Context).ClientIP, hits: 1, families: ratelimiter.AllHeaders,
		namespace: func(*gin.Context) string { return namespace }}
	for _, opt := range opts {
		opt(&cfg)
	}
	return func(c *gin.Context) {
		identifier := cfg.identify(c)
		if identifier == "" {
			c.Next()
			return
		}
		req := ratelimiter.CheckRequest{Namespace: cfg.namespace(c), Identifier: identifier, Hits: cfg.hits}
		res, err := client.Check(c.Request.Context(), req)
		if err != nil && cfg.onError != nil {
			cfg.onError(c, err)
		}
		v := ratelimiter.Judge(res, err, cfg.families)
		for name, values := range v.Header {
			c.Writer.Header()[name] = values
		}
		if v.Pass {
			c.Next()
			return
		}
		c.AbortWithStatus(v.Status)
		_, _ = c.Writer.Write(v.Body)
	}
}

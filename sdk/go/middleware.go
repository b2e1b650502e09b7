package ratelimiter

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
)

// Verdict is what a middleware does with the outcome of a check; framework adapters (net/http
// here, Gin in ginlimiter) apply it the same way.
type Verdict struct {
	Pass   bool        // true: call the next handler; Header goes on its response
	Status int         // else: answer this status (429 refused, 503 could not decide),
	Header http.Header // with these headers
	Body   []byte      // and this JSON body
}

// Judge turns a check's outcome into a Verdict: allowed goes on with the rate-limit headers;
// refused is 429 with them, Retry-After and {"error": "rate limit exceeded",
// "retry_after_seconds": N}; when the sidecar could not decide (err set), the failure mode's
// answer goes on without headers, or is 503 {"error": "rate limiter unavailable"}.
func Judge(res Result, err error, families HeaderFamily) Verdict {
	switch {
	case err != nil && res.Allowed:
		return Verdict{Pass: true, Header: http.Header{}}
	case err != nil:
		return jsonVerdict(http.StatusServiceUnavailable, http.Header{},
			`{"error":"rate limiter unavailable"}`)
	case res.Allowed:
		return Verdict{Pass: true, Header: res.Headers(families)}
	}
	retry := int(res.RetryAfter.Seconds())
	body, _ := json.Marshal(struct {
		Error      string `json:"error"`
		RetryAfter int    `json:"retry_after_seconds"`
	}{"rate limit exceeded", retry})
	return jsonVerdict(http.StatusTooManyRequests, res.Headers(families), string(body))
}

func jsonVerdict(status int, h http.Header, body string) Verdict {
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return Verdict{Status: status, Header: h, Body: []byte(body)}
}

// ClientIP is the default identifier: the address of the peer (RemoteAddr without the port).
// Behind a proxy, identify by the header the proxy sets instead, or by the user or API key.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	identify  func(*http.Request) string
	namespace func(*http.Request) string
	hits      int
	families  HeaderFamily
	onError   func(*http.Request, error)
}

// Identify sets how a request is identified (default ClientIP): typically a user id or an API
// key. An empty identifier lets the request through unchecked (health checks, internal calls).
func Identify(fn func(r *http.Request) string) MiddlewareOption {
	return func(c *middlewareConfig) { c.identify = fn }
}

// NamespaceFunc chooses the namespace per request instead of the fixed one.
func NamespaceFunc(fn func(r *http.Request) string) MiddlewareOption {
	return func(c *middlewareConfig) { c.namespace = fn }
}

// Hits sets the hits charged per request (default 1).
func Hits(n int) MiddlewareOption {
	return func(c *middlewareConfig) { c.hits = n }
}

// SendHeaders chooses the rate-limit header families added to responses (default AllHeaders;
// 0 for none).
func SendHeaders(families HeaderFamily) MiddlewareOption {
	return func(c *middlewareConfig) { c.families = families }
}

// OnError is called with every error of a check (the sidecar unreachable, an invalid request),
// for logging; the failure mode still decides.
func OnError(fn func(r *http.Request, err error)) MiddlewareOption {
	return func(c *middlewareConfig) { c.onError = fn }
}

// rule is a middleware's configuration.
type rule struct{ cfg middlewareConfig }

func newRule(namespace string, opts ...MiddlewareOption) *rule {
	cfg := middlewareConfig{identify: ClientIP, hits: 1, families: AllHeaders,
		namespace: func(*http.Request) string { return namespace }}
	for _, opt := range opts {
		opt(&cfg)
	}
	return &rule{cfg: cfg}
}

// decide checks r with c and returns what to do; ok is false when the request has no
// identifier and goes on unchecked.
func (rule *rule) decide(c *Client, r *http.Request) (v Verdict, ok bool) {
	identifier := rule.cfg.identify(r)
	if identifier == "" {
		return Verdict{}, false
	}
	req := CheckRequest{Namespace: rule.cfg.namespace(r), Identifier: identifier, Hits: rule.cfg.hits}
	res, err := c.Check(r.Context(), req)
	if err != nil && rule.cfg.onError != nil {
		rule.cfg.onError(r, err)
	}
	return Judge(res, err, rule.cfg.families), true
}

// Middleware checks every request with c before next sees it: refused requests get 429 with
// Retry-After and the rate-limit headers, allowed ones go on with the headers added to their
// response (see Judge).
//
//	http.ListenAndServe(":8000", ratelimiter.Middleware(client, "api_requests")(mux))
func Middleware(c *Client, namespace string, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	rule := newRule(namespace, opts...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, ok := rule.decide(c, r)
			if ok {
				for name, values := range v.Header {
					w.Header()[name] = values
				}
			}
			if !ok || v.Pass {
				next.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(v.Status)
			_, _ = w.Write(v.Body)
		})
	}
}

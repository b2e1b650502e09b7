package ratelimiter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HeaderFamily selects which rate-limit response headers Result.Headers writes.
type HeaderFamily int

const (
	// HeadersIETF: RateLimit-Policy: "<policy>";q=<limit>;w=<window> and
	// RateLimit: "<policy>";r=<remaining>;t=<reset>, one member per limited descriptor
	// (draft-ietf-httpapi-ratelimit-headers, as the sidecar writes them).
	HeadersIETF HeaderFamily = 1 << iota
	// HeadersX: X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (seconds).
	HeadersX
	// HeadersRetryAfter: Retry-After (seconds) when refused.
	HeadersRetryAfter
	// AllHeaders is every family (the middleware's default).
	AllHeaders = HeadersIETF | HeadersX | HeadersRetryAfter
)

// Headers returns the response headers the sidecar would send for r, exactly as it writes
// them; none when no limit applies.
func (r Result) Headers(families HeaderFamily) http.Header {
	h := http.Header{}
	members := r.Results
	if len(members) == 0 {
		members = []Result{r}
	}
	var policies, states []string
	for _, m := range members {
		if m.Limited {
			name := sfString(m.Policy)
			policies = append(policies, name+";q="+itoa(m.Limit)+";w="+secs(m.Window))
			states = append(states, name+";r="+itoa(m.Remaining)+";t="+secs(m.ResetAfter))
		}
	}
	if families&HeadersIETF != 0 && len(policies) > 0 {
		h.Set("RateLimit-Policy", strings.Join(policies, ", "))
		h.Set("RateLimit", strings.Join(states, ", "))
	}
	if families&HeadersX != 0 && r.Limited {
		h.Set("X-RateLimit-Limit", itoa(r.Limit))
		h.Set("X-RateLimit-Remaining", itoa(r.Remaining))
		h.Set("X-RateLimit-Reset", secs(r.ResetAfter))
	}
	if families&HeadersRetryAfter != 0 && r.RetryAfter > 0 {
		h.Set("Retry-After", secs(r.RetryAfter))
	}
	return h
}

func itoa(n int) string { return strconv.Itoa(n) }

func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// sfString is an RFC 8941 String: printable ASCII, backslash and double quote escaped.
func sfString(text string) string {
	if text == "" {
		text = "default"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range text {
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

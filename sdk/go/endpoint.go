package ratelimiter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// defaultPort is the sidecar's HTTP port, used when a host:port endpoint has no port.
const defaultPort = "8080"

// parseEndpoint accepts "host:port" (as the sidecar's address is usually written), "host",
// ":port" (localhost) or an http(s) URL, and returns the base URL the API paths are added to.
func parseEndpoint(endpoint string) (*url.URL, error) {
	text := strings.TrimSpace(endpoint)
	if text == "" {
		return nil, fmt.Errorf("ratelimiter: empty endpoint; expected host:port (localhost:8080) or a URL (http://localhost:8080)")
	}
	if !strings.Contains(text, "://") {
		host, port, err := net.SplitHostPort(text)
		if err != nil { // no port: the whole text is the host
			host, port = strings.Trim(text, "[]"), defaultPort
		}
		if host == "" {
			host = "localhost"
		}
		text = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("ratelimiter: endpoint %q: %v", endpoint, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ratelimiter: endpoint %q: scheme %q; expected http or https", endpoint, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("ratelimiter: endpoint %q has no host", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("ratelimiter: endpoint %q: a query or fragment is not expected", endpoint)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// loopbackDialer dials "localhost" as both loopback addresses, 127.0.0.1 first (the sidecar
// binds the IPv4 wildcard by default), then ::1, whatever the resolver would answer: machines
// differ in which one /etc/hosts lists first, or at all. The address that answered last is
// tried first next time. Other names are dialled as usual.
type loopbackDialer struct {
	dialer    net.Dialer
	preferred atomic.Int32 // index in loopbacks of the address that answered last
}

var loopbacks = [2]string{"127.0.0.1", "::1"}

func (d *loopbackDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil || !strings.EqualFold(host, "localhost") {
		return d.dialer.DialContext(ctx, network, address)
	}
	first := int(d.preferred.Load())
	var lastErr error
	for i := range 2 {
		n := (first + i) % 2
		conn, err := d.dialer.DialContext(ctx, network, net.JoinHostPort(loopbacks[n], port))
		if err == nil {
			d.preferred.Store(int32(n))
			return conn, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// newTransport is a keep-alive transport with the loopback-aware dialer; the rest is
// http.DefaultTransport's settings, with more idle connections kept for the one host.
func newTransport() *http.Transport {
	dialer := &loopbackDialer{dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
	return &http.Transport{
		Proxy:                 nil, // the sidecar is local: never through HTTP_PROXY
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second, // below the sidecar's 75 s: drop idle ones before it does
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

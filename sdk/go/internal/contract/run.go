package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
)

// MiddlewareSettings are a middleware step's merged settings.
type MiddlewareSettings struct {
	Namespace        string
	IdentifierHeader string
	Hits             int
}

// Framework wraps App in one framework's middleware built from the settings.
type Framework func(c *ratelimiter.Client, mw MiddlewareSettings) http.Handler

// App is the application of middleware vectors: every route answers 200 "ok".
var App = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok")
})

// Options choose what Run runs: the client vectors, and the middleware vectors once per
// framework.
type Options struct {
	Clients    bool
	Frameworks map[string]Framework
}

// Run runs the contract's vectors as subtests, one after the other, against real sidecars.
func Run(t *testing.T, opts Options) {
	dir, err := FindDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := &environment{t: t, contract: c, sidecars: map[string]*Sidecar{}}
	for _, v := range c.Vectors() {
		places := c.Targets[v.Target]
		if len(places) == 0 {
			places = []string{v.Target}
		}
		runners := map[string]Framework{"client": nil}
		if v.IsMiddleware() {
			runners = opts.Frameworks
		} else if !opts.Clients {
			continue
		}
		for _, place := range places {
			for name, framework := range runners {
				label := fmt.Sprintf("%s/%s/%s", v.Name, place, name)
				t.Run(label, func(t *testing.T) {
					target := env.target(t, place)
					runVector(t, c, v, target, framework)
				})
			}
		}
	}
}

type environment struct {
	t         *testing.T
	contract  *Contract
	sidecars  map[string]*Sidecar
	redisPort int
	silent    *SilentServer
}

// target is where a vector's {port} points; started on first use, kept for the whole run.
type target struct {
	port    int
	sidecar *Sidecar
	silent  *SilentServer
}

func (e *environment) target(t *testing.T, place string) target {
	switch place {
	case "closed_port":
		return target{port: FreePort(t)}
	case "silent_server":
		if e.silent == nil {
			e.silent = StartSilentServer(e.t)
		}
		return target{port: e.silent.Port, silent: e.silent}
	}
	s, ok := e.sidecars[place]
	if !ok {
		if e.contract.Sidecar.Profiles[place].NeedsRedis && e.redisPort == 0 {
			e.redisPort = StartRedis(e.t)
		}
		s = StartSidecar(e.t, e.contract, place, e.redisPort)
		e.sidecars[place] = s
	}
	return target{port: s.HTTPPort, sidecar: s}
}

// windowMargin is how much of a window a vector with window_s needs left to start in it.
const windowMargin = 10 * time.Second

// waitForWindow lets a vector with window_s start its requests in one epoch-aligned window of
// that many seconds (the sidecar's fixed windows): when this one is nearly over, the next.
func waitForWindow(v Vector) {
	if v.WindowS <= 0 {
		return
	}
	window := time.Duration(v.WindowS * float64(time.Second))
	left := window - time.Duration(time.Now().UnixNano())%window
	if left < windowMargin {
		time.Sleep(left + 50*time.Millisecond)
	}
}

func runVector(t *testing.T, c *Contract, v Vector, tg target, framework Framework) {
	waitForWindow(v)
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	values := map[string]string{}
	if len(v.Setup) > 0 {
		var setup []SetupRequest
		for _, request := range v.Setup {
			setup = append(setup, substitute(request, run))
		}
		var err error
		if values, err = tg.sidecar.Setup(setup); err != nil {
			t.Fatal(err)
		}
	}
	for i, step := range v.Steps {
		step = substitute(step, run)
		if err := fillSaved(&step, values); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if step.WaitMs != nil { // outside the step's own time and counters
			time.Sleep(millis(*step.WaitMs))
		}
		settings := merge(c.ClientDefaults, v.Client, step.Client)
		client := newClient(t, settings, tg.port, c.RootKey)
		counters := tg.read(t)
		started := time.Now()
		var actual map[string]any
		switch {
		case step.Request != nil:
			mw := middlewareSettings(merge(c.MiddlewareDefaults, v.Middleware, step.Middleware))
			actual = serve(t, framework(client, mw), *step.Request)
		case step.Call == "verifyKey":
			actual = verify(client, step, started)
		case leaseCalls[step.Call]:
			actual = leaseCall(client, step, started)
			save(step.Save, actual["lease"], values)
		default:
			actual = call(client, step, started)
		}
		elapsed := time.Since(started)
		client.CloseIdleConnections()
		problems := check(step.Expect, actual, elapsed, tg.read(t).minus(counters))
		if step.Call == "verifyKey" {
			problems = append(problems, leaks([]string{deref(step.Key), c.RootKey}, actual["texts"].(map[string]string))...)
		}
		for _, p := range problems {
			t.Errorf("step %d (%s): %s", i, describe(step), p)
		}
	}
}

func describe(s Step) string {
	if s.Request != nil {
		return "request " + s.Request.Path
	}
	return s.Call
}

type counters struct{ sidecar, silent float64 }

func (tg target) read(t *testing.T) counters {
	var out counters
	if tg.sidecar != nil {
		out.sidecar = tg.sidecar.Requests(t)
	}
	if tg.silent != nil {
		out.silent = float64(tg.silent.Requests())
	}
	return out
}

func (a counters) minus(b counters) counters {
	return counters{a.sidecar - b.sidecar, a.silent - b.silent}
}

// check compares what happened with the step's expectations; "error" and "unavailable" are
// checked both ways: a step that does not expect one must not see it.
func check(expect, actual map[string]any, elapsed time.Duration, grew counters) []string {
	var out []string
	for _, key := range []string{"error", "unavailable"} {
		if _, expected := expect[key]; !expected && actual[key] != nil {
			out = append(out, fmt.Sprintf("unexpected %s: %v", key, actual[key]))
		}
	}
	ms := float64(elapsed.Milliseconds())
	for _, key := range sortedKeys(expect) {
		want := expect[key]
		switch key {
		case "min_elapsed_ms":
			if n, _ := number(want); ms < n {
				out = append(out, fmt.Sprintf("took %v ms, expected at least %v", ms, n))
			}
		case "max_elapsed_ms":
			if n, _ := number(want); ms > n {
				out = append(out, fmt.Sprintf("took %v ms, expected at most %v", ms, n))
			}
		case "sidecar_requests":
			out = append(out, Match(key, want, grew.sidecar)...)
		case "silent_requests":
			out = append(out, Match(key, want, grew.silent)...)
		case "headers":
			out = append(out, matchHeaders(want, actual["headers"])...)
		default:
			out = append(out, Match(key, want, actual[key])...)
		}
	}
	return out
}

func matchHeaders(want, actual any) []string {
	expected, _ := want.(map[string]any)
	got, _ := actual.(map[string]any)
	var out []string
	for _, name := range sortedKeys(expected) {
		out = append(out, Match("headers."+name, expected[name], got[strings.ToLower(name)])...)
	}
	return out
}

func headerView(h http.Header) map[string]any {
	out := map[string]any{}
	for name, values := range h {
		out[strings.ToLower(name)] = strings.Join(values, ", ")
	}
	return out
}

// call runs a client step and describes its outcome in the contract's names.
func call(client *ratelimiter.Client, s Step, started time.Time) map[string]any {
	ctx := context.Background()
	if s.Call == "allow" {
		return map[string]any{"return": client.Allow(ctx, deref(s.Identifier), deref(s.Namespace))}
	}
	req := ratelimiter.CheckRequest{Namespace: deref(s.Namespace), Identifier: deref(s.Identifier), Hits: 1,
		Descriptors: descriptors(s.Descriptors)}
	if s.Hits != nil {
		req.Hits = *s.Hits
	}
	var res ratelimiter.Result
	var err error
	switch {
	case s.Call == "report":
		res, err = client.Report(ctx, req)
	case req.Hits == 0:
		res, err = client.Peek(ctx, req)
	default:
		res, err = client.Check(ctx, req)
	}
	out := map[string]any{"result": resultView(res, started),
		"headers": headerView(res.Headers(ratelimiter.AllHeaders))}
	var invalid *ratelimiter.RequestError
	var unavailable *ratelimiter.UnavailableError
	switch {
	case errors.As(err, &invalid):
		out["error"] = map[string]any{"kind": "invalid_request", "field": invalid.Field}
	case errors.As(err, &unavailable):
		out["unavailable"] = map[string]any{"attempts": unavailable.Attempts}
	case err != nil:
		out["error"] = map[string]any{"kind": "unexpected", "message": err.Error()}
	}
	return out
}

func resultView(r ratelimiter.Result, started time.Time) map[string]any {
	view := map[string]any{"allowed": r.Allowed, "limit": nil, "remaining": nil, "reset_at": nil,
		"reset_after_seconds": nil, "retry_after_seconds": nil, "window_seconds": nil,
		"policy": nil, "results": []any{}}
	if r.Limited {
		view["limit"], view["remaining"], view["policy"] = r.Limit, r.Remaining, r.Policy
		view["reset_after_seconds"] = int(r.ResetAfter / time.Second)
		view["window_seconds"] = int(r.Window / time.Second)
	}
	if !r.ResetAt.IsZero() {
		view["reset_at"] = math.Ceil(r.ResetAt.Sub(started).Seconds())
	}
	if r.RetryAfter > 0 {
		view["retry_after_seconds"] = int(r.RetryAfter / time.Second)
	}
	results := []any{}
	for _, each := range r.Results {
		results = append(results, resultView(each, started))
	}
	view["results"] = results
	return view
}

// serve puts handler on a loopback port and sends the step's request to it over HTTP.
func serve(t *testing.T, handler http.Handler, r Request) map[string]any {
	server := httptest.NewServer(handler)
	defer server.Close()
	method, path := r.Method, r.Path
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/hello"
	}
	req, err := http.NewRequest(method, server.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range r.Headers {
		req.Header.Set(name, value)
	}
	httpClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("request to the app: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]any{"status": resp.StatusCode, "body": string(body),
		"headers": headerView(resp.Header)}
	var doc any
	if json.Unmarshal(body, &doc) == nil {
		out["json"] = doc
	}
	return out
}

func newClient(t *testing.T, s map[string]any, port int, rootKey string) *ratelimiter.Client {
	endpoint := strings.ReplaceAll(s["endpoint"].(string), "{port}", strconv.Itoa(port))
	opts := []ratelimiter.Option{
		ratelimiter.WithTimeout(millis(s["timeout_ms"])),
		ratelimiter.WithRetry(ratelimiter.RetryPolicy{Attempts: int(num(s["attempts"])),
			Backoff: millis(s["backoff_ms"]), MaxBackoff: millis(s["max_backoff_ms"])}),
		ratelimiter.WithFailureMode(failureMode(s["failure_mode"])),
	}
	if key, ok := s["root_key"].(string); ok { // null: the client has none
		opts = append(opts, ratelimiter.WithRootKey(strings.ReplaceAll(key, "{root_key}", rootKey)))
	}
	if mode, ok := s["verify_failure_mode"]; ok { // absent: the client's default
		opts = append(opts, ratelimiter.WithVerifyFailureMode(failureMode(mode)))
	}
	client, err := ratelimiter.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatalf("client settings %v: %v", s, err)
	}
	return client
}

func failureMode(setting any) ratelimiter.FailureMode {
	if setting == "closed" {
		return ratelimiter.FailClosed
	}
	return ratelimiter.FailOpen
}

func middlewareSettings(s map[string]any) MiddlewareSettings {
	return MiddlewareSettings{Namespace: s["namespace"].(string),
		IdentifierHeader: s["identifier_header"].(string), Hits: int(num(s["hits"]))}
}

func merge(layers ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, layer := range layers {
		for k, v := range layer {
			out[k] = v
		}
	}
	return out
}

// substitute replaces ${run} in every string of a step or a setup request.
func substitute[T any](s T, run string) T {
	data, _ := json.Marshal(s)
	data = []byte(strings.ReplaceAll(string(data), "${run}", run))
	var out T
	_ = json.Unmarshal(data, &out)
	return out
}

func num(v any) float64 {
	n, _ := number(v)
	return n
}

func millis(v any) time.Duration { return time.Duration(num(v) * float64(time.Millisecond)) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

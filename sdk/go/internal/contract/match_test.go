package contract

import (
	"encoding/json"
	"strings"
	"testing"
)

// The runner's matchers must catch what differs, or a vector would pass by accident.
func TestMatch(t *testing.T) {
	for _, c := range []struct {
		expect, actual string
		problem        string // "" when it matches
	}{
		{`{"a": 1, "b": null}`, `{"a": 1, "b": null, "c": 3}`, ""},
		{`{"a": 1}`, `{"a": 2}`, "x.a: expected"},
		{`{"a": null}`, `{"a": 0}`, "x.a: expected"},
		{`{"a": true}`, `{"a": 1}`, "x.a: expected"},
		{`{"h": {"between": [1, 10]}}`, `{"h": "7"}`, ""},
		{`{"h": {"between": [1, 10]}}`, `{"h": "11"}`, "x.h: expected a number"},
		{`{"h": {"between": [1, 10]}}`, `{"h": null}`, "x.h: expected a number"},
		{`{"h": {"matches": "^r=[0-9]+$"}}`, `{"h": "r=12"}`, ""},
		{`{"h": {"matches": "^r=[0-9]+$"}}`, `{"h": "r=12;"}`, "x.h: expected to match"},
		{`{"h": {"absent": true}}`, `{}`, ""},
		{`{"h": {"absent": true}}`, `{"h": "1"}`, "x.h: expected absent"},
		{`{"r": [{"a": 1}]}`, `{"r": []}`, "x.r: expected 1 items"},
		{`{"r": []}`, `{"r": [{"a": 1}]}`, "x.r: expected 0 items"},
	} {
		var expect, actual any
		if err := json.Unmarshal([]byte(c.expect), &expect); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(c.actual), &actual); err != nil {
			t.Fatal(err)
		}
		problems := strings.Join(Match("x", expect, actual), "; ")
		if (c.problem == "") != (problems == "") || !strings.Contains(problems, c.problem) {
			t.Errorf("Match(%s, %s) = %q; want %q", c.expect, c.actual, problems, c.problem)
		}
	}
}

func TestSampleValue(t *testing.T) {
	labels := map[string][]string{"grpc_method": {"rest_check", "rest_report"}}
	for line, want := range map[string]float64{
		`ratelimit_service_total_requests_total{grpc_method="rest_check"} 12.0`:  12,
		`ratelimit_service_total_requests_total{grpc_method="rest_report"} 3.0`:  3,
		`ratelimit_service_total_requests_total{grpc_method="json"} 5.0`:         0,
		`ratelimit_service_total_requests_created{grpc_method="rest_check"} 1e9`: 0,
	} {
		got, _ := sampleValue(line, "ratelimit_service_total_requests_total", labels)
		if got != want {
			t.Errorf("sampleValue(%s) = %v; want %v", line, got, want)
		}
	}
}

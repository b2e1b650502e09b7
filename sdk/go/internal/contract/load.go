// Package contract runs the SDK contract (sdk/contract at the repository root) against real
// sidecar processes: the Go runner of the vectors described in sdk/contract/README.md. The
// core module's tests run the client and net/http vectors with it, the Gin module's tests the
// middleware vectors through Gin.
package contract

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Version is the contract version this runner knows.
const Version = 4

// Contract is contract.json.
type Contract struct {
	Version     int      `json:"version"`
	Rules       string   `json:"rules"`
	Plans       string   `json:"plans"`
	VectorFiles []string `json:"vector_files"`
	Sidecar     struct {
		ExecutableEnv string             `json:"executable_env"`
		Args          []string           `json:"args"`
		Env           map[string]string  `json:"env"`
		Profiles      map[string]Profile `json:"profiles"`
		Counter       struct {
			Path   string              `json:"path"`
			Metric string              `json:"metric"`
			Labels map[string][]string `json:"labels"`
		} `json:"request_counter"`
	} `json:"sidecar"`
	Targets            map[string][]string `json:"targets"`
	ClientDefaults     map[string]any      `json:"client_defaults"`
	MiddlewareDefaults map[string]any      `json:"middleware_defaults"`

	dir     string
	vectors []Vector
	// RootKey is the run's root key ({root_key}): the full-mode sidecars register it, the
	// setup requests and the clients send it.
	RootKey string
}

// Profile is one way to start the sidecar.
type Profile struct {
	NeedsRedis bool              `json:"needs_redis"`
	Env        map[string]string `json:"env"`
}

// Vector is one case of a vector file.
type Vector struct {
	Name       string         `json:"name"`
	About      string         `json:"about"`
	Target     string         `json:"target"`
	WindowS    float64        `json:"window_s"`
	Client     map[string]any `json:"client"`
	Middleware map[string]any `json:"middleware"`
	Setup      []SetupRequest `json:"setup"`
	Steps      []Step         `json:"steps"`
	File       string         `json:"-"`
}

// SetupRequest is one admin API call a vector makes before its steps (target full).
type SetupRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   any    `json:"body,omitempty"`
	Save   string `json:"save,omitempty"`
}

// Step is one call or one HTTP request, and what must be true of it.
type Step struct {
	Call          string         `json:"call"`
	Namespace     *string        `json:"namespace"`
	Identifier    *string        `json:"identifier"`
	Descriptors   [][][2]string  `json:"descriptors"`
	Hits          *int           `json:"hits"`
	Key           *string        `json:"key"`
	Cost          *int           `json:"cost"`
	Limits        []string       `json:"limits"`
	Features      []string       `json:"features"`
	ClientAddress *string        `json:"client_address"`
	LeaseID       *string        `json:"lease_id"`
	TTLMs         *float64       `json:"ttl_ms"`
	Save          string         `json:"save"`
	WaitMs        *float64       `json:"wait_ms"`
	Request       *Request       `json:"request"`
	Client        map[string]any `json:"client"`
	Middleware    map[string]any `json:"middleware"`
	Expect        map[string]any `json:"expect"`
}

// Request is a middleware step's HTTP request.
type Request struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
}

// IsMiddleware tells middleware vectors (steps with a request) from client ones.
func (v Vector) IsMiddleware() bool { return len(v.Steps) > 0 && v.Steps[0].Request != nil }

// Load reads contract.json and every vector file it lists, refusing unknown keys so that a
// vector this runner does not understand fails instead of being half-run.
func Load(dir string) (*Contract, error) {
	c := &Contract{dir: dir}
	if err := decodeFile(filepath.Join(dir, "contract.json"), c); err != nil {
		return nil, err
	}
	if c.Version != Version {
		return nil, fmt.Errorf("contract version %d; this runner knows version %d", c.Version, Version)
	}
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	c.RootKey = "vroot_contract_" + hex.EncodeToString(token)
	for _, name := range c.VectorFiles {
		var file struct {
			Version int      `json:"version"`
			Vectors []Vector `json:"vectors"`
		}
		if err := decodeFile(filepath.Join(dir, name), &file); err != nil {
			return nil, err
		}
		for _, v := range file.Vectors {
			v.File = name
			if err := v.validate(c); err != nil {
				return nil, fmt.Errorf("%s: vector %s: %w", name, v.Name, err)
			}
			c.vectors = append(c.vectors, v)
		}
	}
	return c, nil
}

func decodeFile(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

var knownExpect = map[string]bool{
	"return": true, "result": true, "headers": true, "error": true, "unavailable": true,
	"status": true, "body": true, "json": true, "sidecar_requests": true,
	"silent_requests": true, "min_elapsed_ms": true, "max_elapsed_ms": true, "verification": true,
	"lease": true, "released": true,
}

var knownCalls = map[string]bool{"allow": true, "check": true, "report": true, "verifyKey": true,
	"acquire_lease": true, "renew_lease": true, "release_lease": true}

func (v Vector) validate(c *Contract) error {
	if _, ok := c.Targets[v.Target]; !ok {
		return fmt.Errorf("unknown target %q", v.Target)
	}
	if len(v.Setup) > 0 && v.Target != "full" {
		return fmt.Errorf("setup needs the target full, not %q", v.Target)
	}
	for i, s := range v.Steps {
		if (s.Request == nil) == (s.Call == "") {
			return fmt.Errorf("step %d: expected either call or request", i)
		}
		if s.Call != "" && !knownCalls[s.Call] {
			return fmt.Errorf("step %d: unknown call %q", i, s.Call)
		}
		for key := range s.Expect {
			if !knownExpect[key] {
				return fmt.Errorf("step %d: unknown expectation %q", i, key)
			}
		}
	}
	return nil
}

// Vectors are every vector of the contract, in file order.
func (c *Contract) Vectors() []Vector { return c.vectors }

// RulesDir is the absolute path of the rules the sidecar serves.
func (c *Contract) RulesDir() string { return filepath.Join(c.dir, c.Rules) }

// PlansDir is the absolute path of the plans a full-mode sidecar serves.
func (c *Contract) PlansDir() string { return filepath.Join(c.dir, c.Plans) }

// FindDir walks up from the working directory to the repository's sdk/contract.
func FindDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, "sdk", "contract")
		if _, err := os.Stat(filepath.Join(candidate, "contract.json")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no sdk/contract/contract.json above the working directory")
		}
		dir = parent
	}
}

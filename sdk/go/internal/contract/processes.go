package contract

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Missing fails the test under CI=true and skips it elsewhere: CI never passes by skipping.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" && os.Getenv("CI") != "false" {
		t.Fatalf("%s is required in CI but was not found", what)
	}
	t.Skipf("%s not found", what)
}

// FreePort is a loopback port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SidecarBinary is VIVA_RATELIMIT_BIN, else the repository's .venv/bin/viva-ratelimit.
func SidecarBinary(t testing.TB, c *Contract) string {
	t.Helper()
	if bin := os.Getenv(c.Sidecar.ExecutableEnv); bin != "" {
		return bin
	}
	bin := filepath.Join(c.dir, "..", "..", ".venv", "bin", "viva-ratelimit")
	if _, err := os.Stat(bin); err != nil {
		Missing(t, "the sidecar executable ("+c.Sidecar.ExecutableEnv+" or "+bin+")")
	}
	return bin
}

// RedisBinary is VIVA_REDIS_SERVER, else redis-server on the PATH.
func RedisBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("VIVA_REDIS_SERVER"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server (VIVA_REDIS_SERVER or the PATH)")
	}
	return bin
}

// Process is a server the runner started; Stop ends it (SIGTERM, then SIGKILL).
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func start(t testing.TB, name string, args []string, env []string) *Process {
	t.Helper()
	log, err := os.CreateTemp("", "viva-contract-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	return p
}

// Stop ends the process and removes its log.
func (p *Process) Stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.log.Close()
	os.Remove(p.log.Name())
}

// Log is what the process wrote so far (for failure messages).
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.log.Name())
	return string(data)
}

func (p *Process) waitPort(t testing.TB, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before port %d opened:\n%s", p.cmd.Path, port, p.Log())
		default:
		}
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: port %d did not open within 30s:\n%s", p.cmd.Path, port, p.Log())
}

// StartRedis starts a throw-away redis-server on a free loopback port.
func StartRedis(t testing.TB) int {
	t.Helper()
	bin := RedisBinary(t)
	port := FreePort(t)
	p := start(t, bin, []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, os.Environ())
	p.waitPort(t, port)
	return port
}

// Sidecar is a running sidecar process.
type Sidecar struct {
	Profile  string
	HTTPPort int
	process  *Process
	contract *Contract
}

// StartSidecar starts the sidecar of profile with the contract's rules on free ports.
func StartSidecar(t testing.TB, c *Contract, profile string, redisPort int) *Sidecar {
	t.Helper()
	p, ok := c.Sidecar.Profiles[profile]
	if !ok {
		t.Fatalf("unknown sidecar profile %q", profile)
	}
	ports := map[string]string{
		"{rules}": c.RulesDir(), "{plans}": c.PlansDir(), "{http_port}": strconv.Itoa(FreePort(t)),
		"{grpc_port}": strconv.Itoa(FreePort(t)), "{debug_port}": strconv.Itoa(FreePort(t)),
		"{redis_port}": strconv.Itoa(redisPort), "{closed_port}": strconv.Itoa(FreePort(t)),
		"{data_dir}": t.TempDir(), "{root_key}": c.RootKey,
	}
	fill := func(s string) string {
		for k, v := range ports {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	var args []string
	for _, a := range c.Sidecar.Args {
		args = append(args, fill(a))
	}
	env := os.Environ()
	for _, vars := range []map[string]string{c.Sidecar.Env, p.Env} {
		for k, v := range vars {
			env = append(env, k+"="+fill(v))
		}
	}
	httpPort, _ := strconv.Atoi(ports["{http_port}"])
	s := &Sidecar{Profile: profile, HTTPPort: httpPort, contract: c,
		process: start(t, SidecarBinary(t, c), args, env)}
	s.process.waitPort(t, httpPort)
	if profile != "store_down" {
		s.waitHealthy(t)
	}
	return s
}

func (s *Sidecar) waitHealthy(t testing.TB) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthcheck", s.HTTPPort)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sidecar %s not healthy within 30s:\n%s", s.Profile, s.process.Log())
}

// Requests is the sidecar's REST request counter (contract.json's request_counter).
func (s *Sidecar) Requests(t testing.TB) float64 {
	t.Helper()
	counter := s.contract.Sidecar.Counter
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.HTTPPort, counter.Path))
	if err != nil {
		t.Fatalf("reading the sidecar's metrics: %v", err)
	}
	defer resp.Body.Close()
	var total float64
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if value, ok := sampleValue(lines.Text(), counter.Metric, counter.Labels); ok {
			total += value
		}
	}
	return total
}

// sampleValue reads `metric{label="value",…} 12.0` when one of its labels has an accepted value.
func sampleValue(line, metric string, labels map[string][]string) (float64, bool) {
	if !strings.HasPrefix(line, metric+"{") {
		return 0, false
	}
	end := strings.LastIndex(line, "}")
	if end < 0 {
		return 0, false
	}
	for name, accepted := range labels {
		for _, value := range accepted {
			if strings.Contains(line[:end], name+`="`+value+`"`) {
				v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// SilentServer accepts connections, reads what arrives, never answers, and counts the
// connections a request arrived on (an HTTP client may open spare ones).
type SilentServer struct {
	Port     int
	requests atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

// StartSilentServer listens on a free loopback port until the test ends.
func StartSilentServer(t testing.TB) *SilentServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SilentServer{Port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			go s.drain(conn)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *SilentServer) drain(conn net.Conn) {
	buf := make([]byte, 4096)
	if _, err := conn.Read(buf); err != nil {
		return
	}
	s.requests.Add(1)
	for {
		if _, err := conn.Read(buf); err != nil {
			return
		}
	}
}

// Requests is how many connections a request arrived on so far.
func (s *SilentServer) Requests() int64 { return s.requests.Load() }

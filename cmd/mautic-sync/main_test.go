package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/embedded"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadSettingsPrintEveryProblem(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("MAUTIC_URL", "")
	t.Setenv("MAUTIC_USERNAME", "u")
	t.Setenv("MAUTIC_PASSWORD", "")
	t.Setenv("BATCH_SIZE", "500")
	var out, errOut syncBuffer
	code := run(context.Background(), []string{"run"}, &out, &errOut)
	if code != exitConfig {
		t.Errorf("exit code %d, want %d", code, exitConfig)
	}
	for _, want := range []string{"NATS_URL is not set", "MAUTIC_URL is not set", "MAUTIC_PASSWORD is not set", "BATCH_SIZE must be between 1 and 200", "4 problem(s)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut syncBuffer
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errOut); code != exitConfig {
		t.Errorf("exit code %d, want %d", code, exitConfig)
	}
	if code := run(context.Background(), []string{"help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "Commands:") {
		t.Errorf("help: code %d output %q", code, out.String())
	}
}

func TestEnvListsSettings(t *testing.T) {
	var out syncBuffer
	if code := run(context.Background(), []string{"env"}, &out, io.Discard); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	for _, s := range config.Settings() {
		if !strings.Contains(out.String(), s.Key) {
			t.Errorf("env output lacks %s", s.Key)
		}
	}
}

// TestReadmeDocumentsEverySetting keeps the README's settings table whole.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		row := fmt.Sprintf("| `%s` |", s.Key)
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("README has no settings row for %s", s.Key)
		}
	}
	if !bytes.HasPrefix(bytes.TrimLeft(readme, "# mautic-sync\n"), []byte("```sh\ngo run ./cmd/mautic-sync dev")) {
		t.Error("README must open with the command that runs the service on embedded defaults")
	}
}

func TestDevOnceShowsEveryOutcome(t *testing.T) {
	t.Setenv("HTTP_ADDR", freeAddr(t))
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, []string{"dev", "--once", "--nats-port", "-1"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	o := out.String()
	for _, want := range []string{
		"contact.upsert", "contact.delete", "contact.segment.add", "contact.segment.remove",
		"contact.dnc.add", "contact.dnc.remove", "contact.points.add", "DEAD LETTER",
		"city=Bergen", "points=5",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("dev output lacks %q:\n%s", want, o)
		}
	}
	if n := strings.Count(o, "APPLIED"); n != 9 {
		t.Errorf("%d applied outcomes, want 9:\n%s", n, o)
	}
}

// TestRunServesHealthAndProcesses runs the production command against an
// embedded NATS and the fake, as a deployment would.
func TestRunServesHealthAndProcesses(t *testing.T) {
	ns, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	fake := mautictest.NewServer(mautictest.WithClientCredentials("1_cid", "oauth-secret-value"))
	defer fake.Close()
	addr := freeAddr(t)
	t.Setenv("NATS_URL", ns.ClientURL())
	t.Setenv("MAUTIC_URL", fake.URL())
	t.Setenv("MAUTIC_CLIENT_ID", "1_cid")
	t.Setenv("MAUTIC_CLIENT_SECRET", "oauth-secret-value")
	t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", "true")
	t.Setenv("HTTP_ADDR", addr)
	t.Setenv("BATCH_LINGER", "10ms")
	t.Setenv("WORKER_RETRY_MIN", "20ms")
	t.Setenv("WORKER_RETRY_MAX", "200ms")

	ctx, cancel := context.WithCancel(context.Background())
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run"}, io.Discard, &errOut) }()

	get := func(path string) (int, string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	waitFor(t, 15*time.Second, func() error {
		code, body, err := get("/readyz")
		if err != nil || code != 200 {
			return fmt.Errorf("readyz %d %s %v", code, body, err)
		}
		return nil
	})
	if code, _, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	body := `{"specversion":"1.0","id":"run-1","source":"/t","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"r@example.com","fields":{"city":"Oslo"}}}`
	if _, err := js.Publish(ctx, "mautic.contacts.r", []byte(body)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		s, err := js.Stream(ctx, "MAUTIC_SYNC_RESULTS")
		if err != nil {
			return err
		}
		m, err := s.GetMsg(ctx, 1)
		if err != nil {
			return err
		}
		var r map[string]any
		_ = json.Unmarshal(m.Data, &r)
		if r["outcome"] != "applied" {
			return fmt.Errorf("result %s", m.Data)
		}
		return nil
	})
	// The outcome is stored before the input is acknowledged and the
	// gauges are sampled: wait for the metrics to settle.
	var metrics string
	wantMetrics := []string{
		`mautic_sync_events_total{outcome="applied",type="contact.upsert"} 1`,
		`mautic_sync_mautic_calls_total{endpoint="contacts/batch/new",status="201"} 1`,
		`mautic_sync_mautic_calls_total{endpoint="oauth/v2/token",status="200"} 1`,
		`mautic_sync_mautic_call_duration_seconds_count{endpoint="contacts/batch/new"} 1`,
		`mautic_sync_batch_items_count{endpoint="contacts/batch/new"} 1`,
		`mautic_sync_event_latency_seconds_count 1`,
		`mautic_sync_consumer_pending 0`,
		`mautic_sync_consumer_ack_pending 0`,
		`mautic_sync_inflight_calls 0`,
		`mautic_sync_concurrency_limit 4`,
		`mautic_sync_paused{cause="outage"} 0`,
		`mautic_sync_ready 1`,
		`mautic_sync_rate_limit_remaining -1`,
		`mautic_sync_token_renewals 1`,
		`mautic_sync_mautic_info{version="5.1.0"} 1`,
	}
	waitFor(t, 10*time.Second, func() error {
		_, metrics, _ = get("/metrics")
		for _, want := range wantMetrics {
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	for _, family := range []string{"mautic_sync_dead_letters_total", "mautic_sync_ignored_fields_total", "mautic_sync_rate_limit_reset_timestamp_seconds", "mautic_sync_step_calls_total"} {
		if !strings.Contains(metrics, "# TYPE "+family) {
			t.Errorf("metrics lack the family %s", family)
		}
	}
	if strings.Contains(metrics, "oauth-secret-value") || strings.Contains(errOut.String(), "oauth-secret-value") {
		t.Error("the client secret reached metrics or logs")
	}

	// Mautic's API turned off: readiness flips with the reason, and back.
	fake.SetAPIEnabled(false)
	if _, err := js.Publish(ctx, "mautic.contacts.r", []byte(strings.Replace(body, "run-1", "run-2", 1))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		code, body, _ := get("/readyz")
		if code != 503 || !strings.Contains(body, "api_disabled") {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})
	fake.SetAPIEnabled(true)
	waitFor(t, 15*time.Second, func() error {
		code, body, _ := get("/readyz")
		if code != 200 {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})
	// An outage: readiness flips to paused, outage, and back.
	fake.SetDown(http.StatusServiceUnavailable)
	if _, err := js.Publish(ctx, "mautic.contacts.r", []byte(strings.Replace(body, "run-1", "run-3", 1))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		code, body, _ := get("/readyz")
		if code != 503 || !strings.Contains(body, "outage") {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		_, m, _ := get("/metrics")
		if !strings.Contains(m, `mautic_sync_paused{cause="outage"} 1`) {
			return fmt.Errorf("paused metric not set")
		}
		return nil
	})
	fake.SetDown(0)
	waitFor(t, 15*time.Second, func() error {
		code, body, _ := get("/readyz")
		if code != 200 {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})

	// A TCP probe's connection that never sends a request is open while
	// the service stops: it must not fail the stop (net/http waits 5 s
	// for such a connection, as long as the shutdown's own timeout).
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code %d; log:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
}

// TestSIGTERMStopsTheBinary builds the real binary, runs dev and stops it
// with SIGTERM.
func TestSIGTERMStopsTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mautic-sync")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "dev", "--nats-port", "-1")
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+freeAddr(t))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		if strings.Count(out.String(), "APPLIED") < 9 {
			return fmt.Errorf("output so far:\n%s", out.String())
		}
		return nil
	})
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("stopping took %s", d)
		}
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no exit within 40s of SIGTERM\n%s", out.String())
	}
}

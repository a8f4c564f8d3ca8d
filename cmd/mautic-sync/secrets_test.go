package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

// secretScan collects everything the service shows the world (logs at
// debug level, command output, /metrics, /readyz, /healthz, every outcome
// message with its headers) and the secrets that must appear in none of it.
type secretScan struct {
	mu      sync.Mutex
	secrets map[string]string // value -> what it is
	seen    []string          // "where: text"
}

func (s *secretScan) secret(what, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = map[string]string{}
	}
	s.secrets[value] = what
}

func (s *secretScan) add(where, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, where+": "+text)
}

// captureCredentials records the credentials every request to the fake
// carries (bearer tokens, Basic blobs, token-endpoint bodies' secrets).
func (s *secretScan) captureCredentials(fake *mautictest.Server) {
	fake.SetHook(func(_ http.ResponseWriter, r *http.Request) bool {
		a := r.Header.Get("Authorization")
		switch {
		case strings.HasPrefix(a, "Bearer "):
			s.secret("a bearer token", strings.TrimPrefix(a, "Bearer "))
		case strings.HasPrefix(a, "Basic "):
			s.secret("a basic auth header", strings.TrimPrefix(a, "Basic "))
		}
		return false
	})
}

func (s *secretScan) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.secrets) < 8 || len(s.seen) < 10 {
		t.Fatalf("the scan is too small to mean anything: %d secrets, %d texts", len(s.secrets), len(s.seen))
	}
	for value, what := range s.secrets {
		for _, text := range s.seen {
			if strings.Contains(text, value) {
				where, _, _ := strings.Cut(text, ": ")
				t.Errorf("%s (%q) appears in %s:\n%s", what, value, where, excerptAround(text, value))
			}
		}
	}
}

func excerptAround(text, value string) string {
	i := strings.Index(text, value)
	from, to := max(0, i-300), min(len(text), i+len(value)+100)
	return text[from:to]
}

// authNATS starts a JetStream server that requires credentials.
func authNATS(t *testing.T, configure func(*server.Options)) *server.Server {
	t.Helper()
	return natstest.StartServer(t, func(o *server.Options) {
		o.JetStream, o.StoreDir = true, t.TempDir()
		configure(o)
	})
}

// serviceEnv sets exactly these variables (others of the service's are
// unset) for one run.
func serviceEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{"NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "MAUTIC_URL", "MAUTIC_USERNAME",
		"MAUTIC_PASSWORD", "MAUTIC_CLIENT_ID", "MAUTIC_CLIENT_SECRET", "MAUTIC_REFRESH_TOKEN", "HTTP_ADDR"} {
		t.Setenv(k, env[k])
		if env[k] == "" {
			os.Unsetenv(k) // t.Setenv restores it
		}
	}
	t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", "true")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("BATCH_LINGER", "10ms")
	t.Setenv("WORKER_RETRY_MIN", "20ms")
	t.Setenv("WORKER_RETRY_MAX", "200ms")
	t.Setenv("WORKER_DRAIN_TIMEOUT", "2s") // a stop during an auth fault waits for it
}

// running is one run of `mautic-sync run`.
type running struct {
	t      *testing.T
	addr   string
	cancel context.CancelFunc
	done   chan int
	out    *syncBuffer
}

func startSecretRun(t *testing.T, s *secretScan, env map[string]string) *running {
	t.Helper()
	env["HTTP_ADDR"] = freeAddr(t)
	serviceEnv(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, addr: env["HTTP_ADDR"], cancel: cancel, done: make(chan int, 1), out: &syncBuffer{}}
	go func() { r.done <- run(ctx, []string{"run"}, r.out, r.out) }()
	t.Cleanup(func() { r.stop(s) })
	return r
}

func (r *running) get(s *secretScan, path string) (int, string) {
	resp, err := http.Get("http://" + r.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s.add("GET "+path, string(b))
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until its status is want (and its body contains
// reason).
func (r *running) waitReady(s *secretScan, want int, reason string) {
	r.t.Helper()
	waitFor(r.t, 20*time.Second, func() error {
		code, body := r.get(s, "/readyz")
		if code != want || !strings.Contains(body, reason) {
			return fmt.Errorf("readyz %d %s, want %d with %q", code, body, want, reason)
		}
		return nil
	})
}

// stop ends the run (once) and collects its output.
func (r *running) stop(s *secretScan) int {
	if r.cancel == nil {
		return -1
	}
	r.cancel()
	r.cancel = nil
	code := -1
	select {
	case code = <-r.done:
	case <-time.After(30 * time.Second):
		r.t.Error("the service did not stop")
	}
	s.add("the service's output", r.out.String())
	return code
}

// outcomes publishes events with conn and waits until the service stored n
// outcomes, then adds every outcome message to the scan.
func collectOutcomes(t *testing.T, s *secretScan, js jetstream.JetStream, n int) {
	t.Helper()
	ctx := context.Background()
	var msgs []*jetstream.RawStreamMsg
	waitFor(t, 20*time.Second, func() error {
		msgs = nil
		for _, name := range []string{"MAUTIC_SYNC_RESULTS", "MAUTIC_SYNC_DLQ"} {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
				if m, err := st.GetMsg(ctx, seq); err == nil {
					msgs = append(msgs, m)
				}
			}
		}
		if len(msgs) < n {
			return fmt.Errorf("%d of %d outcomes", len(msgs), n)
		}
		return nil
	})
	for _, m := range msgs {
		s.add("outcome "+m.Subject, fmt.Sprintf("%v %s", m.Header, m.Data))
	}
}

func sampleEvents(prefix string) [][]byte {
	ev := func(id, typ, data string) []byte {
		return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/secrets","type":%q,"time":"2026-11-25T10:00:00Z","data":%s}`, prefix+id, typ, data)
	}
	return [][]byte{
		ev("1", "contact.upsert", `{"email":"`+prefix+`a@example.com","fields":{"city":"Oslo","firstname":"Ann"}}`),
		ev("2", "contact.points.add", `{"email":"`+prefix+`a@example.com","delta":3}`),
		ev("3", "contact.upsert", `{"email":"`+prefix+`r@example.com","fields":{"firstname":"Refuse"}}`), // rejected
		ev("4", "contact.points.add", `{"email":"`+prefix+`nobody@example.com","delta":1}`),              // rejected: no contact
		[]byte(`{"specversion":"1.0","id":"` + prefix + `5","data":{}}`),                                 // invalid
		ev("6", "contact.segment.add", `{"email":"`+prefix+`a@example.com","segment_id":2}`),
	}
}

func publishAll(t *testing.T, js jetstream.JetStream, bodies [][]byte) {
	t.Helper()
	for i, b := range bodies {
		if _, err := js.Publish(context.Background(), fmt.Sprintf("mautic.contacts.k%d", i), b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecretsNeverLeak runs a representative slice of the service with
// distinctive secrets everywhere (NATS user/password and token, Mautic
// OAuth2 client credentials, a refresh token, basic auth, and wrong ones of
// each) through full pipeline runs with auth faults, refused credentials
// and the check command; it captures every log line (debug level),
// command output, /metrics, /readyz and /healthz answer and every outcome
// message, and finds none of the secrets in them, nor the access tokens
// and basic-auth headers that went over the wire.
func TestSecretsNeverLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the service several times")
	}
	s := &secretScan{}
	const (
		natsPass    = "nats-Pw-7c1e0d"
		natsToken   = "nats-Tk-4b4b9e"
		oauthSecret = "oauth-Sc-93ab21"
		wrongSecret = "wrong-Sc-55dd07"
		basicPass   = "basic-Pw-1f2e6c"
		wrongBasic  = "basic-Wr-8a8a3d"
		refreshTok  = "refresh-Tk-77aa5f"
		rtSecret    = "rt-Sc-3c3c18"
		wrongNATS   = "nats-Wr-6e6e42"
	)
	for what, v := range map[string]string{"NATS_PASSWORD": natsPass, "NATS_TOKEN": natsToken, "MAUTIC_CLIENT_SECRET": oauthSecret,
		"a wrong MAUTIC_CLIENT_SECRET": wrongSecret, "MAUTIC_PASSWORD": basicPass, "a wrong MAUTIC_PASSWORD": wrongBasic,
		"MAUTIC_REFRESH_TOKEN": refreshTok, "the refresh-token client's secret": rtSecret, "a wrong NATS_PASSWORD": wrongNATS} {
		s.secret(what, v)
	}
	for _, up := range []string{"api:" + basicPass, "api:" + wrongBasic} {
		s.secret("a basic auth header", base64.StdEncoding.EncodeToString([]byte(up)))
	}

	fake := mautictest.NewServer(mautictest.WithClientCredentials("1_cid", oauthSecret), mautictest.WithBasicAuth("api", basicPass),
		mautictest.WithRefreshToken("2_rt", rtSecret, refreshTok), mautictest.WithTokenLifetime(2*time.Second))
	defer fake.Close()
	fake.RejectItems(func(item map[string]any) (int, string) {
		if item["firstname"] == "Refuse" {
			return http.StatusUnprocessableEntity, "firstname: this value is not allowed."
		}
		return 0, ""
	})
	s.captureCredentials(fake)

	usersNATS := authNATS(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "svc", Password: natsPass}, {Username: "admin", Password: "admin-pass"}}
	})
	admin, err := nats.Connect(usersNATS.ClientURL(), nats.UserInfo("admin", "admin-pass"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adminJS, _ := jetstream.New(admin)

	t.Run("oauth run with token faults", func(t *testing.T) {
		r := startSecretRun(t, s, map[string]string{"NATS_URL": usersNATS.ClientURL(), "NATS_USER": "svc", "NATS_PASSWORD": natsPass,
			"MAUTIC_URL": fake.URL(), "MAUTIC_CLIENT_ID": "1_cid", "MAUTIC_CLIENT_SECRET": oauthSecret})
		r.waitReady(s, http.StatusOK, "")
		publishAll(t, adminJS, sampleEvents("o"))
		fake.ExpireAllTokens()
		publishAll(t, adminJS, sampleEvents("p"))
		fake.RevokeAllTokens()
		collectOutcomes(t, s, adminJS, 12)
		fake.SetAPIEnabled(false)
		publishAll(t, adminJS, sampleEvents("q"))
		r.waitReady(s, http.StatusServiceUnavailable, "api_disabled")
		fake.SetAPIEnabled(true)
		collectOutcomes(t, s, adminJS, 18)
		r.get(s, "/metrics")
		r.get(s, "/healthz")
		if code := r.stop(s); code != exitOK {
			t.Errorf("exit code %d", code)
		}
	})
	t.Run("oauth run with a wrong client secret", func(t *testing.T) {
		r := startSecretRun(t, s, map[string]string{"NATS_URL": usersNATS.ClientURL(), "NATS_USER": "svc", "NATS_PASSWORD": natsPass,
			"MAUTIC_URL": fake.URL(), "MAUTIC_CLIENT_ID": "1_cid", "MAUTIC_CLIENT_SECRET": wrongSecret})
		publishAll(t, adminJS, sampleEvents("w"))
		r.waitReady(s, http.StatusServiceUnavailable, "auth")
		r.get(s, "/metrics")
		r.stop(s)
	})
	t.Run("refresh-token run", func(t *testing.T) {
		r := startSecretRun(t, s, map[string]string{"NATS_URL": usersNATS.ClientURL(), "NATS_USER": "svc", "NATS_PASSWORD": natsPass,
			"MAUTIC_URL": fake.URL(), "MAUTIC_CLIENT_ID": "2_rt", "MAUTIC_CLIENT_SECRET": rtSecret, "MAUTIC_REFRESH_TOKEN": refreshTok})
		publishAll(t, adminJS, sampleEvents("rt"))
		collectOutcomes(t, s, adminJS, 30) // the wrong-secret run's 6 too, now
		r.get(s, "/metrics")
		r.stop(s)
	})
	t.Run("wrong NATS password", func(t *testing.T) {
		serviceEnv(t, map[string]string{"NATS_URL": usersNATS.ClientURL(), "NATS_USER": "svc", "NATS_PASSWORD": wrongNATS,
			"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": basicPass})
		var out syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if code := run(ctx, []string{"run"}, &out, &out); code == exitOK {
			t.Error("the service ran with a wrong NATS password")
		}
		s.add("output with a wrong NATS password", out.String())
	})

	tokenNATS := authNATS(t, func(o *server.Options) { o.Authorization = natsToken })
	tnc, err := nats.Connect(tokenNATS.ClientURL(), nats.Token(natsToken))
	if err != nil {
		t.Fatal(err)
	}
	defer tnc.Close()
	tokenJS, _ := jetstream.New(tnc)
	t.Run("basic auth run over a NATS token", func(t *testing.T) {
		r := startSecretRun(t, s, map[string]string{"NATS_URL": tokenNATS.ClientURL(), "NATS_TOKEN": natsToken,
			"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": basicPass})
		r.waitReady(s, http.StatusOK, "")
		publishAll(t, tokenJS, sampleEvents("b"))
		collectOutcomes(t, s, tokenJS, 6)
		r.get(s, "/metrics")
		r.stop(s)
	})
	t.Run("basic auth run with a wrong password", func(t *testing.T) {
		r := startSecretRun(t, s, map[string]string{"NATS_URL": tokenNATS.ClientURL(), "NATS_TOKEN": natsToken,
			"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": wrongBasic})
		publishAll(t, tokenJS, sampleEvents("bw"))
		r.waitReady(s, http.StatusServiceUnavailable, "auth")
		r.get(s, "/metrics")
		r.stop(s)
	})
	t.Run("wrong NATS token", func(t *testing.T) {
		serviceEnv(t, map[string]string{"NATS_URL": tokenNATS.ClientURL(), "NATS_TOKEN": "nats-Tk-wrong-0f0f",
			"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": basicPass})
		s.secret("a wrong NATS_TOKEN", "nats-Tk-wrong-0f0f")
		var out syncBuffer
		if code := run(context.Background(), []string{"run"}, &out, &out); code == exitOK {
			t.Error("the service ran with a wrong NATS token")
		}
		s.add("output with a wrong NATS token", out.String())
	})
	t.Run("check command", func(t *testing.T) {
		for _, env := range []map[string]string{
			{"MAUTIC_URL": fake.URL(), "MAUTIC_CLIENT_ID": "1_cid", "MAUTIC_CLIENT_SECRET": oauthSecret},
			{"MAUTIC_URL": fake.URL(), "MAUTIC_CLIENT_ID": "1_cid", "MAUTIC_CLIENT_SECRET": wrongSecret},
			{"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": basicPass},
			{"MAUTIC_URL": fake.URL(), "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": wrongBasic},
			{"MAUTIC_URL": fake.URL() + "/wrong", "MAUTIC_USERNAME": "api", "MAUTIC_PASSWORD": basicPass},
		} {
			serviceEnv(t, env)
			var out syncBuffer
			code := run(context.Background(), []string{"check"}, &out, &out)
			s.add(fmt.Sprintf("check output (exit %d)", code), out.String())
		}
	})
	s.check(t)
}

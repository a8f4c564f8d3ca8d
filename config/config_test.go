package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/config"
)

// setValid sets the minimum environment of a valid configuration.
func setValid(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:4222")
	t.Setenv("MAUTIC_URL", "https://mautic.example.com")
	t.Setenv("MAUTIC_USERNAME", "api")
	t.Setenv("MAUTIC_PASSWORD", "hunter2-secret")
}

func TestLoadDefaults(t *testing.T) {
	setValid(t)
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"stream", cfg.Stream.Name, "MAUTIC_CONTACTS"},
		{"subjects", strings.Join(cfg.Stream.Subjects, ","), "mautic.contacts.>"},
		{"consumer", cfg.Consumer.Name, "mautic-sync"},
		{"result stream", cfg.Outcomes.ResultStream, "MAUTIC_SYNC_RESULTS"},
		{"result subject", cfg.Outcomes.ResultSubject, "mautic.sync.result"},
		{"dlq stream", cfg.Outcomes.DLQStream, "MAUTIC_SYNC_DLQ"},
		{"dlq subject", cfg.Outcomes.DLQSubject, "mautic.sync.dlq"},
		{"http", cfg.HTTP.Addr, ":8080"},
		{"batch", cfg.Batch.Size, 200},
		{"create", cfg.CreateStreams, true},
		{"timeout", cfg.Mautic.Timeout, 120 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOAuth(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:4222")
	t.Setenv("MAUTIC_URL", "https://mautic.example.com")
	t.Setenv("MAUTIC_CLIENT_ID", "1_abc")
	t.Setenv("MAUTIC_CLIENT_SECRET", "s3cret")
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !cfg.Mautic.UsesOAuth() {
		t.Error("UsesOAuth = false, want true")
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("MAUTIC_URL", "http://mautic.example.com")
	t.Setenv("MAUTIC_USERNAME", "api")
	t.Setenv("MAUTIC_PASSWORD", "")
	t.Setenv("BATCH_SIZE", "abc")
	t.Setenv("BATCH_LINGER", "soon")
	t.Setenv("WORKER_CONCURRENCY", "-1")
	t.Setenv("RESULT_SUBJECT", "mautic.contacts.results")
	t.Setenv("LOG_LEVEL", "loud")

	_, err := config.Load()
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	// Parse errors come first; Load stops before Validate when values do
	// not parse, so check both phases separately.
	for _, want := range []string{`BATCH_SIZE="abc": not a valid whole number`, `BATCH_LINGER="soon": not a valid duration`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	t.Setenv("BATCH_SIZE", "201")
	t.Setenv("BATCH_LINGER", "1s")
	_, err = config.Load()
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	for _, want := range []string{
		"NATS_URL is not set",
		"MAUTIC_URL uses plain http",
		"MAUTIC_PASSWORD is not set",
		"BATCH_SIZE must be between 1 and 200",
		"WORKER_CONCURRENCY must be 0 (adaptive) or more",
		`RESULT_SUBJECT="mautic.contacts.results" is captured by the input stream`,
		`LOG_LEVEL="loud"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestSecretValuesNotEchoed(t *testing.T) {
	setValid(t)
	t.Setenv("NATS_PASSWORD", "pw") // no user: a validation error that must not echo it
	t.Setenv("MAUTIC_PASSWORD", "hunter2-secret")
	_, err := config.Load()
	if err == nil {
		t.Fatal("want an error for NATS_PASSWORD without NATS_USER")
	}
	if strings.Contains(err.Error(), "hunter2-secret") || strings.Contains(err.Error(), "=\"pw\"") {
		t.Errorf("error leaks a secret: %v", err)
	}
}

func TestBothAuthModesRefused(t *testing.T) {
	setValid(t)
	t.Setenv("MAUTIC_CLIENT_ID", "1_abc")
	t.Setenv("MAUTIC_CLIENT_SECRET", "s")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Errorf("Load error = %v, want both-auth-modes error", err)
	}
}

func TestSettingsListsEveryKeyOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range config.Settings() {
		if s.Key == "" || s.Description == "" {
			t.Errorf("setting %+v lacks a key or description", s)
		}
		if seen[s.Key] {
			t.Errorf("key %s listed twice", s.Key)
		}
		seen[s.Key] = true
	}
	for _, k := range []string{"NATS_URL", "MAUTIC_URL", "MAUTIC_USERNAME", "MAUTIC_PASSWORD", "MAUTIC_CLIENT_ID", "MAUTIC_CLIENT_SECRET", "HTTP_ADDR"} {
		if !seen[k] {
			t.Errorf("required key %s missing from Settings", k)
		}
	}
}

// A setting that is not a string and is set to "" (a downward-API label
// that does not exist, an unset Helm value) takes its default; a string
// setting keeps the empty value; a value that is not empty but wrong is
// still refused.
func TestEmptyValueIsUnsetForNonStrings(t *testing.T) {
	setValid(t)
	t.Setenv("REPLICA_INDEX", "")
	t.Setenv("BATCH_SIZE", " ")
	t.Setenv("BATCH_LINGER", "")
	t.Setenv("CREATE_STREAMS", "")
	t.Setenv("LOG_LEVEL", "")
	cfg, err := config.Parse()
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Partition.Index != -1 || cfg.Batch.Size != 200 || cfg.Batch.Linger != 100*time.Millisecond || !cfg.CreateStreams {
		t.Errorf("empty values: index %d, batch %d, linger %s, create %v; want the defaults -1, 200, 100ms, true",
			cfg.Partition.Index, cfg.Batch.Size, cfg.Batch.Linger, cfg.CreateStreams)
	}
	if cfg.Log.Level != "" {
		t.Errorf("LOG_LEVEL=\"\" parsed as %q; a string keeps its empty value", cfg.Log.Level)
	}
	t.Setenv("BATCH_SIZE", "two hundred")
	if _, err := config.Parse(); err == nil || !strings.Contains(err.Error(), "BATCH_SIZE") {
		t.Errorf("a wrong non-empty value must still be refused, got %v", err)
	}
}

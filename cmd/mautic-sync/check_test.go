package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
)

func TestCheckReportsEachFailure(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithBasicAuth("u", "pw-secret"), mautictest.WithVersion("5.1.0"),
		mautictest.WithRateLimit(100, time.Hour), mautictest.WithFields(mautictest.Field{Alias: "loyalty_tier"}))
	defer fake.Close()
	t.Setenv("MAUTIC_URL", fake.URL())
	t.Setenv("MAUTIC_USERNAME", "u")
	t.Setenv("MAUTIC_PASSWORD", "pw-secret")
	t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", "true")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"a@b.c","fields":{"city":"Oslo","loyalty_tier":"gold"}}}`), 0o644)
	bad := filepath.Join(dir, "bad.ndjson")
	os.WriteFile(bad, []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"a@b.c","fields":{"citty":"Oslo","score":0}}}
{"specversion":"1.0","id":"2","source":"/s","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":{"email":"a@b.c","fields":{"points":0}}}
`), 0o644)

	run1 := func(args ...string) (int, string) {
		var out, errOut syncBuffer
		code := run(context.Background(), append([]string{"check"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	code, out := run1(good)
	if code != exitOK {
		t.Fatalf("check on a good setup: %d\n%s", code, out)
	}
	for _, want := range []string{"Mautic version: 5.1.0", "of 100 calls left", "MAUTIC_RATE_LIMIT is not set", "every field alias exists", "all checks passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out = run1(good, bad)
	if code != exitFailure || !strings.Contains(out, "citty") || !strings.Contains(out, "score") || !strings.Contains(out, "numeric 0") {
		t.Errorf("unknown alias: code %d\n%s", code, out)
	}
	fake.SetAPIEnabled(false)
	if code, out = run1(); code != exitFailure || !strings.Contains(out, "API disabled") {
		t.Errorf("API disabled: code %d\n%s", code, out)
	}
	fake.SetAPIEnabled(true)
	t.Setenv("MAUTIC_PASSWORD", "wrong")
	if code, out = run1(); code != exitFailure || !strings.Contains(out, "MAUTIC_USERNAME") {
		t.Errorf("bad password: code %d\n%s", code, out)
	}
	if strings.Contains(out, "pw-secret") || strings.Contains(out, "wrong") && strings.Contains(out, "=wrong") {
		t.Errorf("output leaks a password:\n%s", out)
	}
	t.Setenv("MAUTIC_URL", fake.URL()+"/nope")
	t.Setenv("MAUTIC_PASSWORD", "pw-secret")
	if code, out = run1(); code != exitFailure || !strings.Contains(out, "MAUTIC_URL") {
		t.Errorf("wrong URL: code %d\n%s", code, out)
	}
}

// In refresh-token mode check takes the current token from the store in
// JetStream the service uses and gives the rotated one back: a second check
// (or the service) goes on with it. Without the store the second check
// would send the spent token from the environment and be refused.
func TestCheckRefreshTokenUsesTheSharedStore(t *testing.T) {
	fake := mautictest.NewServer(mautictest.WithRefreshToken("2_rt", "rt-secret", "first-refresh-token"))
	defer fake.Close()
	cliNATS(t)
	t.Setenv("MAUTIC_URL", fake.URL())
	t.Setenv("MAUTIC_CLIENT_ID", "2_rt")
	t.Setenv("MAUTIC_CLIENT_SECRET", "rt-secret")
	t.Setenv("MAUTIC_REFRESH_TOKEN", "first-refresh-token")
	t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", "true")
	for i := range 2 {
		var out, errOut syncBuffer
		code := run(context.Background(), []string{"check"}, &out, &errOut)
		if code != exitOK {
			t.Fatalf("check %d in refresh-token mode: exit %d\n%s%s", i+1, code, out.String(), errOut.String())
		}
		if s := out.String() + errOut.String(); strings.Contains(s, "first-refresh-token") || strings.Contains(s, "rt-secret") {
			t.Errorf("check %d output leaks a secret:\n%s", i+1, s)
		}
		fake.ExpireAllTokens() // the next check must refresh, with the rotated token
	}
	if n := fake.TokensIssued(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one per check, each from the token the previous one stored)", n)
	}
}

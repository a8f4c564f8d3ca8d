package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/config"
)

// TestSecurityInsecureHTTPRefused: a plain http:// MAUTIC_URL would send
// the credentials in clear, so config.Load refuses it unless
// MAUTIC_ALLOW_INSECURE_HTTP=true; https is always accepted.
func TestSecurityInsecureHTTPRefused(t *testing.T) {
	for _, tc := range []struct {
		url, allow string
		refused    bool
	}{
		{"http://mautic.example.com", "", true},
		{"http://mautic.example.com", "false", true},
		{"HTTP://mautic.example.com/mautic", "", true},
		{"http://mautic.example.com", "true", false},
		{"https://mautic.example.com", "", false},
		{"https://mautic.example.com", "false", false},
	} {
		t.Run(tc.url+" allow="+tc.allow, func(t *testing.T) {
			setValid(t)
			t.Setenv("MAUTIC_URL", tc.url)
			t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", tc.allow)
			if tc.allow == "" {
				os.Unsetenv("MAUTIC_ALLOW_INSECURE_HTTP") // t.Setenv restores it
			}
			_, err := config.Load()
			refused := err != nil && strings.Contains(err.Error(), "MAUTIC_URL uses plain http")
			if refused != tc.refused {
				t.Errorf("refused = %v (%v), want %v", refused, err, tc.refused)
			}
			if !tc.refused && err != nil {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

// TestSecuritySecretsNotInConfigErrors: no configuration error repeats a
// secret, whether it sits in a secret setting or in a URL.
func TestSecuritySecretsNotInConfigErrors(t *testing.T) {
	const secret = "Zk9-secret-value-Qw7"
	cases := map[string]map[string]string{
		"unparseable secret-looking values": {"MAUTIC_PASSWORD": secret, "MAUTIC_TIMEOUT": "never"},
		"password without user":             {"NATS_PASSWORD": secret, "NATS_USER": ""},
		"credentials in MAUTIC_URL":         {"MAUTIC_URL": "https://api:" + secret + "@mautic.example.com"},
		"credentials in a broken URL":       {"MAUTIC_URL": "api:" + secret + "@mautic.example.com"},
		"credentials in an unparseable URL": {"MAUTIC_URL": "https://api:" + secret + "@mautic example.com/%zz"},
		"credentials in a plain http URL":   {"MAUTIC_URL": "http://api:" + secret + "@mautic.example.com"},
		"both auth modes":                   {"MAUTIC_CLIENT_ID": "1_x", "MAUTIC_CLIENT_SECRET": secret},
		"secret without id":                 {"MAUTIC_USERNAME": "", "MAUTIC_PASSWORD": "", "MAUTIC_CLIENT_SECRET": secret},
		"token and bad NATS URL":            {"NATS_TOKEN": secret, "NATS_URL": ""},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			setValid(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			_, err := config.Load()
			if err == nil {
				t.Fatal("Load accepted it; the case is meant to fail")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error repeats the secret:\n%v", err)
			}
		})
	}
}

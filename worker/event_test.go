package worker_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/worker"
)

func TestDecodeValidExamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.json")
	if len(files) < 8 {
		t.Fatalf("found %d valid examples, want 8", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := worker.Decode(body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.ID == "" || ev.Type == "" || ev.Time.IsZero() {
				t.Errorf("decoded event lacks id, type or time: %+v", ev)
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	body, _ := os.ReadFile("testdata/valid/upsert.json")
	ev, err := worker.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev.Email, "Ann.Lee@example.com"; got != want {
		t.Errorf("Email = %q, want %q", got, want)
	}
	if got, want := ev.Identity(), "email:ann.lee@example.com"; got != want {
		t.Errorf("Identity = %q, want %q", got, want)
	}
	if got, want := strings.Join(ev.Tags, ","), "gold,-trial"; got != want {
		t.Errorf("Tags = %q, want %q", got, want)
	}
	body, _ = os.ReadFile("testdata/valid/upsert-by-id.json")
	ev, err = worker.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Identity() != "id:7" || !ev.OverwriteWithBlank || ev.Fields["city"] != nil {
		t.Errorf("upsert by id decoded as %+v", ev)
	}
	if _, ok := ev.Fields["city"]; !ok {
		t.Error("a null field must be kept (it clears the field with overwrite_with_blank)")
	}
	body, _ = os.ReadFile("testdata/valid/dnc-remove.json")
	ev, _ = worker.Decode(body)
	if ev.Channel != "email" || ev.Reason != 3 {
		t.Errorf("DNC defaults: channel %q reason %d, want email 3", ev.Channel, ev.Reason)
	}
}

func TestDecodeInvalidExamples(t *testing.T) {
	want := map[string]string{
		"bad-version-and-time.json": "specversion",
		"binary.json":               "not valid UTF-8",
		"no-identity.json":          "names no contact",
		"segment-id-string.json":    "data.segment_id",
		"truncated.json":            "truncated JSON",
		"unknown-type.json":         "unknown event type",
		"zero-delta.json":           "data.delta: must not be zero",
		"mautic-id-string.json":     "data.mautic_id",
		"nested-field.json":         "data.fields.address",
		"data-array.json":           "data: must be a JSON object",
	}
	files, _ := filepath.Glob("testdata/invalid/*.json")
	if len(files) != len(want) {
		t.Fatalf("found %d invalid examples, want %d", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, _ := os.ReadFile(f)
			_, err := worker.Decode(body)
			var ie *worker.InvalidEventError
			if !errors.As(err, &ie) {
				t.Fatalf("Decode error = %v, want *InvalidEventError", err)
			}
			if !strings.Contains(err.Error(), want[filepath.Base(f)]) {
				t.Errorf("error %q does not mention %q", err, want[filepath.Base(f)])
			}
		})
	}
}

func TestDecodeEdgeCases(t *testing.T) {
	base := func(data string) []byte {
		return []byte(`{"specversion":"1.0","id":"e1","source":"/x","type":"contact.upsert","time":"2026-11-25T10:00:00Z","data":` + data + `}`)
	}
	cases := []struct {
		name    string
		body    []byte
		wantErr string // "" means valid
	}{
		{"big number kept exact", base(`{"email":"a@b.c","fields":{"n":123456789012345678901234567890}}`), ""},
		{"bool and null fields", base(`{"email":"a@b.c","fields":{"b":true,"z":null}}`), ""},
		{"reserved key", base(`{"email":"a@b.c","fields":{"tags":"x"}}`), "not a field alias"},
		{"fields.email differs", base(`{"email":"a@b.c","fields":{"email":"other@b.c"}}`), "differs from data.email"},
		{"email not an address", base(`{"email":"nobody"}`), "not an email address"},
		{"negative id", base(`{"mautic_id":-1}`), "greater than 0"},
		{"fractional id", base(`{"mautic_id":1.5}`), "must be an integer"},
		{"huge id", base(`{"mautic_id":99999999999999999999}`), "out of range"},
		{"empty tag", base(`{"email":"a@b.c","tags":["-"]}`), "must not be empty"},
		{"data null", base(`null`), "data"},
		{"trailing garbage", append(base(`{"email":"a@b.c"}`), []byte(`{}`)...), "trailing"},
		{"top-level array", []byte(`[]`), "not a JSON object"},
		{"long id", []byte(`{"specversion":"1.0","id":"` + strings.Repeat("x", 201) + `","source":"/x","type":"contact.delete","time":"2026-11-25T10:00:00Z","data":{"mautic_id":1}}`), "1-200"},
		{"over 1 MiB", base(`{"email":"a@b.c","fields":{"x":"` + strings.Repeat("y", 1<<20) + `"}}`), "1 MiB"},
		{"bad content type", []byte(`{"specversion":"1.0","id":"x","source":"/x","type":"contact.delete","time":"2026-11-25T10:00:00Z","datacontenttype":"text/xml","data":{"mautic_id":1}}`), "datacontenttype"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := worker.Decode(c.body)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if n, ok := ev.Fields["n"].(json.Number); ok && n.String() != "123456789012345678901234567890" {
					t.Errorf("big number changed to %s", n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Decode error = %v, want one mentioning %q", err, c.wantErr)
			}
		})
	}
}

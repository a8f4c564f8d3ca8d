package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

// cliNATS starts an embedded NATS server, points NATS_URL at it and
// returns a JetStream client.
func cliNATS(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, _, js := natstest.Start(t)
	t.Setenv("NATS_URL", ns.ClientURL())
	return js
}

// cli runs one command line and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func defaultTopology(t *testing.T) queue.Topology {
	t.Helper()
	cfg, err := config.Parse()
	if err != nil {
		t.Fatal(err)
	}
	return topology(cfg)
}

func TestCLICommandsCheckOnlyNATSSettings(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("MAUTIC_URL", "")
	t.Setenv("BATCH_SIZE", "abc")
	for _, args := range [][]string{{"provision"}, {"dlq", "list"}, {"dlq", "show", "1"}, {"dlq", "redrive", "--dry-run"}, {"publish", "--email", "a@example.com"}} {
		code, _, errOut := cli(t, args...)
		if code != exitConfig || !strings.Contains(errOut, "NATS_URL is not set") || strings.Contains(errOut, "MAUTIC") || strings.Contains(errOut, "BATCH_SIZE") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("NATS_CONNECT_TIMEOUT", "1s")
	t.Setenv("NATS_MAX_RECONNECTS", "0")
	if code, _, errOut := cli(t, "provision"); code != exitFailure || !strings.Contains(errOut, "NATS") {
		t.Errorf("unreachable NATS: exit %d\n%s", code, errOut)
	}
}

func TestCLIUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"provision", "-h"}, exitOK, "--dry-run"},
		{[]string{"provision", "--bogus"}, exitConfig, "flag provided but not defined"},
		{[]string{"provision", "extra"}, exitConfig, "unexpected argument"},
		{[]string{"dlq"}, exitConfig, "list"},
		{[]string{"dlq", "frob"}, exitConfig, "unknown command"},
		{[]string{"dlq", "list", "-h"}, exitOK, "--reason"},
		{[]string{"dlq", "list", "--since", "yesterday"}, exitConfig, "neither an RFC 3339 time"},
		{[]string{"dlq", "list", "--reason", "nope"}, exitConfig, "want invalid_event, rejected or max_deliveries"},
		{[]string{"dlq", "list", "--subject", "a..b"}, exitConfig, "not a subject filter"},
		{[]string{"dlq", "list", "--since", "1h", "--until", "2h"}, exitConfig, "before since"},
		{[]string{"dlq", "show"}, exitConfig, "give one dead-letter sequence"},
		{[]string{"dlq", "show", "x"}, exitConfig, "not a stream sequence"},
		{[]string{"dlq", "show", "-h"}, exitOK, "SEQ"},
		{[]string{"dlq", "redrive", "--seq", "1,x"}, exitConfig, "not a stream sequence"},
		{[]string{"publish", "-h"}, exitOK, "--wait"},
		{[]string{"publish", "--file", "x.json", "--email", "a@example.com"}, exitConfig, "cannot be used with it"},
		{[]string{"publish", "--data", "[1]"}, exitConfig, "--data must be one JSON object"},
		{[]string{"publish", "--field", "novalue"}, exitConfig, "alias=value"},
	} {
		code, out, errOut := cli(t, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, out, errOut)
		}
	}
	// Not a terminal and no --yes: refused before anything is read.
	var out, errOut syncBuffer
	code := cmdDLQ(context.Background(), []string{"redrive", "--reason", "rejected"}, strings.NewReader("y\n"), &out, &errOut)
	if code != exitConfig || !strings.Contains(errOut.String(), "Pass --yes") {
		t.Errorf("redrive without --yes from a pipe: exit %d\n%s", code, errOut.String())
	}
}

func TestProvisionCommand(t *testing.T) {
	js := cliNATS(t)
	ctx := context.Background()

	code, out, errOut := cli(t, "provision", "--dry-run")
	if code != exitOK {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"stream MAUTIC_CONTACTS: create\n", "subjects          [mautic.contacts.>]", "stream MAUTIC_SYNC_RESULTS: create",
		"stream MAUTIC_SYNC_DLQ: create", "consumer mautic-sync on stream MAUTIC_CONTACTS: create", "max deliver      unlimited",
		"Dry run: 4 to create, 0 to update, 0 unchanged; nothing was changed.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := js.Stream(ctx, "MAUTIC_CONTACTS"); err == nil {
		t.Fatal("dry run created the stream")
	}

	if code, out, errOut := cli(t, "provision"); code != exitOK || !strings.Contains(out, "Done: 4 created, 0 updated, 0 unchanged.") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cli(t, "provision")
	if code != exitOK || strings.Count(out, ": unchanged\n") != 4 || !strings.Contains(out, "Nothing to change.") {
		t.Errorf("second run: exit %d\n%s", code, out)
	}

	t.Setenv("CONSUMER_ACK_WAIT", "45s")
	t.Setenv("STREAM_DUPLICATE_WINDOW", "5m")
	code, out, _ = cli(t, "provision", "--dry-run")
	for _, want := range []string{
		"stream MAUTIC_CONTACTS: update\n    duplicate window  2m0s → 5m0s\n",
		"consumer mautic-sync on stream MAUTIC_CONTACTS: update\n    ack wait  1m0s → 45s\n",
		"Dry run: 0 to create, 4 to update, 0 unchanged; nothing was changed.",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("dry run of the change lacks %q:\n%s", want, out)
		}
	}
	cons, _ := js.Consumer(ctx, "MAUTIC_CONTACTS", "mautic-sync")
	if cons.CachedInfo().Config.AckWait != time.Minute {
		t.Error("dry run changed the consumer")
	}
	if code, out, errOut := cli(t, "provision"); code != exitOK || !strings.Contains(out, "Done: 0 created, 4 updated, 0 unchanged.") {
		t.Fatalf("apply the change: exit %d\n%s%s", code, out, errOut)
	}
	cons, _ = js.Consumer(ctx, "MAUTIC_CONTACTS", "mautic-sync")
	s, _ := js.Stream(ctx, "MAUTIC_SYNC_DLQ")
	if cons.CachedInfo().Config.AckWait != 45*time.Second || s.CachedInfo().Config.Duplicates != 5*time.Minute {
		t.Errorf("not applied: ack wait %s, DLQ duplicate window %s", cons.CachedInfo().Config.AckWait, s.CachedInfo().Config.Duplicates)
	}
	if _, out, _ := cli(t, "provision"); !strings.Contains(out, "Nothing to change.") {
		t.Errorf("after the change:\n%s", out)
	}
}

// storeDeadLetter stores a dead letter as the worker writes them.
func storeDeadLetter(t *testing.T, js jetstream.JetStream, reason, status, subj string, body []byte, hdr ...string) uint64 {
	t.Helper()
	m := nats.NewMsg("mautic.sync.dlq")
	m.Data = body
	m.Header.Set(contract.HeaderReason, reason)
	m.Header.Set(contract.HeaderError, "Mautic says no: "+reason)
	if status != "" {
		m.Header.Set(contract.HeaderStatus, status)
	}
	m.Header.Set(contract.HeaderSubject, subj)
	m.Header.Set(contract.HeaderStreamSeq, "11")
	m.Header.Set(contract.HeaderDeliveries, "1")
	m.Header.Set(contract.HeaderFailedAt, "2026-11-25T10:00:00Z")
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	ack, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID(fmt.Sprintf("dlq-%s-%d", subj, len(body))))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestDLQCommands(t *testing.T) {
	js := cliNATS(t)
	ctx := context.Background()
	if _, err := queue.Ensure(ctx, js, defaultTopology(t), true); err != nil {
		t.Fatal(err)
	}
	binary := []byte{0xff, 0xfe, 'x'}
	s1 := storeDeadLetter(t, js, "rejected", "422", "mautic.contacts.a", []byte(`{"id":"ev-1","data":{"email":"a@example.com"}}`), "X-Producer", "crm")
	s2 := storeDeadLetter(t, js, "invalid_event", "", "mautic.contacts.b", binary)
	s3 := storeDeadLetter(t, js, "rejected", "404", "mautic.contacts.b", []byte(`{"id":"ev-3"}`))

	code, out, errOut := cli(t, "dlq", "list")
	if code != exitOK {
		t.Fatalf("list: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ  FAILED AT             REASON         STATUS  SUBJECT            EVENT ID  ERROR") ||
		!strings.HasPrefix(lines[1], fmt.Sprintf("%d    2026-11-25T10:00:00Z  rejected       422     mautic.contacts.a  ev-1      Mautic says no: rejected", s1)) ||
		!strings.HasPrefix(lines[2], fmt.Sprintf("%d    2026-11-25T10:00:00Z  invalid_event  -       mautic.contacts.b  -", s2)) {
		t.Errorf("list table:\n%s", out)
	}
	if _, out, _ := cli(t, "dlq", "list", "--subject", "mautic.contacts.b", "--reason", "rejected"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "ev-3") {
		t.Errorf("filtered list:\n%s", out)
	}
	if _, out, errOut := cli(t, "dlq", "list", "--since", "2026-11-26T00:00:00Z"); out != "" || !strings.Contains(errOut, "No dead letters match.") {
		t.Errorf("list of none: %q %q", out, errOut)
	}

	_, out, _ = cli(t, "dlq", "list", "--json")
	var rows []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var row map[string]any
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		rows = append(rows, row)
	}
	if len(rows) != 3 || rows[0]["body"] != `{"id":"ev-1","data":{"email":"a@example.com"}}` || rows[0]["event_id"] != "ev-1" ||
		rows[0]["status"] != float64(422) || rows[0]["subject"] != "mautic.contacts.a" {
		t.Errorf("json rows %v", rows)
	}
	if h, _ := rows[0]["headers"].(map[string]any); fmt.Sprint(h["X-Producer"]) != "[crm]" || fmt.Sprint(h["Mautic-Sync-Reason"]) != "[rejected]" {
		t.Errorf("json headers %v", h)
	}
	if b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(rows[1]["body_base64"])); string(b) != string(binary) || rows[1]["body"] != nil {
		t.Errorf("binary body %v", rows[1])
	}

	code, out, _ = cli(t, "dlq", "show", fmt.Sprint(s1))
	for _, want := range []string{"Reason:      rejected", "Status:      422", "Subject:     mautic.contacts.a", "Event id:    ev-1", "  X-Producer: crm", "\"email\": \"a@example.com\""} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if _, out, _ := cli(t, "dlq", "show", fmt.Sprint(s2)); !strings.Contains(out, "not valid UTF-8; base64") || !strings.Contains(out, base64.StdEncoding.EncodeToString(binary)) {
		t.Errorf("show binary:\n%s", out)
	}
	if code, out, _ := cli(t, "dlq", "show", fmt.Sprint(s3), "--json"); code != exitOK || !strings.Contains(out, `"event_id":"ev-3"`) {
		t.Errorf("show --json: %d %s", code, out)
	}
	if code, _, errOut := cli(t, "dlq", "show", "99"); code != exitFailure || !strings.Contains(errOut, "no dead letter 99") {
		t.Errorf("show missing: %d %s", code, errOut)
	}

	// Dry run: listed, nothing changed.
	code, out, _ = cli(t, "dlq", "redrive", "--reason", "rejected", "--dry-run")
	if code != exitOK || !strings.Contains(out, "Dry run: 2 dead letter(s) (rejected: 2) would be republished") {
		t.Errorf("dry run: %d\n%s", code, out)
	}
	// Redrive the rejected ones.
	code, out, errOut = cli(t, "dlq", "redrive", "--reason", "rejected", "--yes")
	if code != exitOK {
		t.Fatalf("redrive: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("redriven  dlq %d -> mautic.contacts.a (MAUTIC_CONTACTS seq 1)", s1),
		fmt.Sprintf("redriven  dlq %d -> mautic.contacts.b (MAUTIC_CONTACTS seq 2)", s3),
		"Redriven 2 of 2.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("redrive output lacks %q:\n%s", want, out)
		}
	}
	in, _ := js.Stream(ctx, "MAUTIC_CONTACTS")
	m, err := in.GetMsg(ctx, 1)
	if err != nil || m.Subject != "mautic.contacts.a" || m.Header.Get("Nats-Msg-Id") != fmt.Sprintf("redrive-%d", s1) ||
		m.Header.Get("X-Producer") != "crm" || m.Header.Get(contract.HeaderReason) != "" {
		t.Errorf("republished %+v %v", m, err)
	}
	if _, out, _ := cli(t, "dlq", "list"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "invalid_event") {
		t.Errorf("left in the DLQ:\n%s", out)
	}
	// Re-running is harmless: nothing selected.
	if code, _, errOut := cli(t, "dlq", "redrive", "--seq", fmt.Sprint(s1), "--yes"); code != exitOK || !strings.Contains(errOut, "already redriven?") {
		t.Errorf("redrive of a redriven seq: %d %s", code, errOut)
	}
}

func TestProgressBar(t *testing.T) {
	var b strings.Builder
	p := newProgressBar(&b, 25, "redriven")
	for i := range 25 {
		if i == 3 {
			p.Println("FAILED    dlq 4: nope")
		}
		p.Add(1, i == 3)
	}
	p.Done()
	out := b.String()
	if !strings.Contains(out, "\r\033[KFAILED    dlq 4: nope\n") || !strings.HasSuffix(out, "\r[==============================] 24/25 redriven, 1 failed\033[K\n") {
		t.Errorf("progress output %q", out)
	}
}

// startService runs 'mautic-sync run' against the fake until the test ends,
// and waits until its consumer exists.
func startService(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	fake := mautictest.NewServer(mautictest.WithBasicAuth("api", "pw"))
	t.Cleanup(fake.Close)
	t.Setenv("MAUTIC_URL", fake.URL())
	t.Setenv("MAUTIC_USERNAME", "api")
	t.Setenv("MAUTIC_PASSWORD", "pw")
	t.Setenv("MAUTIC_ALLOW_INSECURE_HTTP", "true")
	t.Setenv("HTTP_ADDR", "")
	t.Setenv("BATCH_LINGER", "10ms")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var logs syncBuffer
	go func() { done <- run(ctx, []string{"run"}, io.Discard, &logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("service exit %d\n%s", code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("service did not stop")
		}
	})
	waitFor(t, 15*time.Second, func() error {
		_, err := js.Consumer(context.Background(), "MAUTIC_CONTACTS", "mautic-sync")
		return err
	})
}

func TestPublishCommand(t *testing.T) {
	js := cliNATS(t)
	startService(t, js)
	ctx := context.Background()
	in, err := js.Stream(ctx, "MAUTIC_CONTACTS")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := in.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	// Invalid events are refused with the contract's problem, and not published.
	code, _, errOut := cli(t, "publish", "--type", "contact.segment.add", "--email", "jane@example.com")
	if code != exitConfig || !strings.Contains(errOut, "not published: invalid event: data.segment_id: is required") || !strings.Contains(errOut, `"type":"contact.segment.add"`) {
		t.Errorf("invalid from flags: exit %d\n%s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "ev.json")
	if err := os.WriteFile(file, []byte(`{"specversion":"1.0","id":"f1","source":"/t","type":"contact.segment.add","time":"2026-11-25T10:00:00Z","data":{"email":"a@example.com","segment_id":"3"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := cli(t, "publish", "--file", file); code != exitConfig || !strings.Contains(errOut, "data.segment_id: must be an integer, got a string") {
		t.Errorf("invalid file: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := cli(t, "publish", "--email", "a@example.com", "--subject", "elsewhere.x"); code != exitConfig || !strings.Contains(errOut, "not captured") {
		t.Errorf("subject outside the stream: exit %d\n%s", code, errOut)
	}
	if n := stored(); n != 0 {
		t.Fatalf("%d messages stored by refused publishes", n)
	}

	// A valid event goes to mautic.contacts.<sha256(email)[:16]> with its id as Nats-Msg-Id; --wait shows the result.
	sum := sha256.Sum256([]byte("jane.doe@example.com"))
	wantSubject := "mautic.contacts." + hex.EncodeToString(sum[:])[:16]
	args := []string{"publish", "--email", " Jane.Doe@Example.com ", "--field", "firstname=Jane", "--field", "city:=null", "--tag", "vip", "--id", "cli-1", "--wait", "--timeout", "20s"}
	code, out, errOut := cli(t, args...)
	if code != exitOK || !strings.Contains(out, "Published event cli-1 (contact.upsert) to "+wantSubject+": stream MAUTIC_CONTACTS seq 1.") ||
		!strings.Contains(out, "Outcome: applied\n") || !strings.Contains(out, `"event_id":"cli-1"`) {
		t.Fatalf("publish: exit %d\n%s\n%s", code, out, errOut)
	}
	m, err := in.GetMsg(ctx, 1)
	if err != nil || m.Subject != wantSubject || m.Header.Get("Nats-Msg-Id") != "cli-1" {
		t.Errorf("stored %+v, %v", m, err)
	}
	var ev map[string]any
	_ = json.Unmarshal(m.Data, &ev)
	if ev["source"] != "/mautic-sync/cli" || fmt.Sprint(ev["data"]) != "map[email: Jane.Doe@Example.com  fields:map[city:<nil> firstname:Jane] tags:[vip]]" {
		t.Errorf("stored event %s", m.Data)
	}

	// The same id again: dropped by the stream, and --wait still finds the outcome.
	code, out, _ = cli(t, args...)
	if code != exitOK || !strings.Contains(out, "Event cli-1 was already stored (stream MAUTIC_CONTACTS seq 1)") || !strings.Contains(out, "Outcome: applied") {
		t.Errorf("duplicate publish: exit %d\n%s", code, out)
	}

	// --subject; an edit of an unknown contact is dead-lettered, and --wait says so.
	code, out, _ = cli(t, "publish", "--subject", "mautic.contacts.custom", "--mautic-id", "999", "--field", "city=Oslo", "--wait", "--timeout", "20s")
	if code != exitFailure || !strings.Contains(out, "to mautic.contacts.custom: stream MAUTIC_CONTACTS seq 2.") ||
		!strings.Contains(out, "Outcome: dead letter rejected (Mautic status 404)") || !strings.Contains(out, "mautic-sync dlq show 1") {
		t.Errorf("dead-lettered publish: exit %d\n%s", code, out)
	}

	// A whole event from stdin, keyed by mautic_id.
	var sout, serr syncBuffer
	body := `{"specversion":"1.0","id":"stdin-1","source":"/t","type":"contact.points.add","time":"2026-11-25T10:00:00Z","data":{"mautic_id":1,"delta":3}}`
	if code := cmdPublish(ctx, []string{"--file", "-"}, strings.NewReader(body), &sout, &serr); code != exitOK || !strings.Contains(sout.String(), "to mautic.contacts.1: stream MAUTIC_CONTACTS seq 3.") {
		t.Errorf("publish from stdin: exit %d\n%s\n%s", code, sout.String(), serr.String())
	}
	if m, err := in.GetMsg(ctx, 3); err != nil || string(m.Data) != body {
		t.Errorf("stdin event stored as %v, %v", m, err)
	}
}

func TestIsTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(null) || isTerminal(f) || isTerminal(strings.NewReader("")) {
		t.Error("the null device, a file or a reader taken for a terminal")
	}
}

package queue

// The ledger's pipelined bulk operations against a real embedded NATS
// server: batch gets agree with per-key gets, are cut in chunks the server
// accepts and fall back where the server refuses them; async puts are all
// acknowledged or named in the error.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue/natstest"
)

// ledgerServer starts an embedded server and connects to it.
func ledgerServer(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	_, nc, js := natstest.Start(tb)
	return nc, js
}

func openTestLedger(tb testing.TB, js jetstream.JetStream, bucket string) *Ledger {
	tb.Helper()
	l, err := OpenLedger(context.Background(), js, LedgerOptions{Bucket: bucket, TTL: time.Hour, Create: true})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// countRequests counts the requests published on subject.
func countRequests(t *testing.T, nc *nats.Conn, subject string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := nc.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// settledCount waits until n stops growing (the counting subscription's
// callbacks run on their own goroutine) and returns it.
func settledCount(t *testing.T, nc *nats.Conn, n *atomic.Int64, want int64) int64 {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for any extra one to show
	return n.Load()
}

func testIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		// Event ids may hold any characters.
		ids[i] = fmt.Sprintf("%s/évènement %d.*>", prefix, i)
	}
	return ids
}

func TestLedgerGetMatchesPerKeyTruth(t *testing.T) {
	_, js := ledgerServer(t)
	ctx := context.Background()
	l := openTestLedger(t, js, "LEDGER_MIX")
	ids := testIDs("mix", 60)
	values := map[string]string{}
	for i, id := range ids[:40] {
		values[id] = fmt.Sprintf(`{"state":"applied","n":%d}`, i)
	}
	values[ids[0]] = "" // an empty value is a value
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[10:15] {
		if err := l.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids[15:18] {
		if err := l.kv.Purge(ctx, ledgerKey(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Deleted, then stored again: present.
	if err := l.Put(ctx, map[string]string{ids[12]: "again"}); err != nil {
		t.Fatal(err)
	}
	query := append(append([]string{}, ids...), ids[3], ids[45], ids[12]) // repeats too
	got, err := l.Get(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := l.getEach(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, truth) {
		t.Fatalf("batch get differs from per-key gets:\n got   %v\n truth %v", got, truth)
	}
	if len(got) != 40-8+1 || got[ids[12]] != "again" || got[ids[0]] != "" || got[ids[20]] != values[ids[20]] {
		t.Fatalf("unexpected answer (%d found): %v", len(got), got)
	}
	if !l.batchGets() {
		t.Fatal("batch gets were turned off against a server that has them")
	}
	// Nothing present at all (the server's 404 No Results) and nothing asked.
	if got, err := l.Get(ctx, testIDs("absent", 5)); err != nil || len(got) != 0 {
		t.Fatalf("absent ids: %v, %v", got, err)
	}
	if got, err := l.Get(ctx, nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no ids: %v, %v", got, err)
	}
	if !l.batchGets() {
		t.Fatal("an answer of no messages turned batch gets off")
	}
}

func TestLedgerGetEmptyBucket(t *testing.T) {
	_, js := ledgerServer(t)
	l := openTestLedger(t, js, "LEDGER_EMPTY")
	got, err := l.Get(context.Background(), testIDs("x", 3))
	if err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	if !l.batchGets() {
		t.Fatal("an empty bucket turned batch gets off")
	}
}

func TestLedgerLargeGetIsChunked(t *testing.T) {
	nc, js := ledgerServer(t)
	ctx := context.Background()
	l := openTestLedger(t, js, "LEDGER_BIG")
	// More ids than the server answers in one multi_last request (1024).
	ids := testIDs("big", 1500)
	values := map[string]string{}
	for i, id := range ids {
		if i%3 != 1 {
			values[id] = fmt.Sprint(i)
		}
	}
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	requests := countRequests(t, nc, "$JS.API.DIRECT.GET.KV_LEDGER_BIG")
	got, err := l.Get(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, values) {
		t.Fatalf("got %d values, want %d", len(got), len(values))
	}
	want := int64((len(ids) + multiLastChunk - 1) / multiLastChunk)
	if n := settledCount(t, nc, requests, want); n != want {
		t.Fatalf("%d direct get requests for %d ids, want %d", n, len(ids), want)
	}
	if !l.batchGets() {
		t.Fatal("batch gets turned off")
	}
}

func TestLedgerPutThenGetRoundTrip(t *testing.T) {
	_, js := ledgerServer(t)
	ctx := context.Background()
	l := openTestLedger(t, js, "LEDGER_RT")
	ids := testIDs("rt", 200)
	values := map[string]string{}
	for i, id := range ids {
		values[id] = strings.Repeat("v", i%7) + fmt.Sprint(i)
	}
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	// Every value is stored when Put returns: read each with plain kv gets
	// under the unchanged key hashing.
	for id, v := range values {
		e, err := l.kv.Get(ctx, ledgerKey(id))
		if err != nil || string(e.Value()) != v {
			t.Fatalf("kv get %q: %v, %v", id, e, err)
		}
	}
	// Overwrite half.
	for i, id := range ids[:100] {
		values[id] = fmt.Sprint("new-", i)
	}
	if err := l.Put(ctx, map[string]string(maps.Collect(func(yield func(string, string) bool) {
		for _, id := range ids[:100] {
			if !yield(id, values[id]) {
				return
			}
		}
	}))); err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, values) {
		t.Fatal("Get after Put differs from what was put")
	}
	// A key written in production before this change (by KeyValue.Put
	// under the same hash) reads the same.
	if _, err := l.kv.Put(ctx, ledgerKey("legacy"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Get(ctx, []string{"legacy"}); err != nil || got["legacy"] != "old" {
		t.Fatalf("legacy key: %v, %v", got, err)
	}
}

func TestLedgerPutCancelledContext(t *testing.T) {
	_, js := ledgerServer(t)
	l := openTestLedger(t, js, "LEDGER_CANCEL")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Put(ctx, map[string]string{"a": "1", "b": "2"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v", err)
	}
	if _, err := l.Get(ctx, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
	if !l.batchGets() {
		t.Fatal("a cancelled context turned batch gets off")
	}
}

func TestLedgerPutNamesTheFailedIDs(t *testing.T) {
	_, js := ledgerServer(t)
	ctx := context.Background()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "LEDGER_SMALL", History: 1, MaxValueSize: 16}); err != nil {
		t.Fatal(err)
	}
	l := openTestLedger(t, js, "LEDGER_SMALL")
	values := map[string]string{"ok-1": "short", "too big": strings.Repeat("x", 64), "ok-2": "short too"}
	err := l.Put(ctx, values)
	var perr *LedgerPutError
	if !errors.As(err, &perr) {
		t.Fatalf("Put of an oversized value: %v", err)
	}
	if len(perr.Failed) != 1 || perr.Failed["too big"] == nil || perr.Total != 3 {
		t.Fatalf("failed ids %v of %d", perr.Failed, perr.Total)
	}
	if !strings.Contains(err.Error(), `"too big"`) || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("error does not name the id: %v", err)
	}
	got, gerr := l.Get(ctx, []string{"ok-1", "ok-2", "too big"})
	if gerr != nil || !maps.Equal(got, map[string]string{"ok-1": "short", "ok-2": "short too"}) {
		t.Fatalf("after a partly failed Put: %v, %v", got, gerr)
	}
}

func TestLedgerConcurrentPutsPastTheWindow(t *testing.T) {
	_, js := ledgerServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := openTestLedger(t, js, "LEDGER_WINDOW")
	const writers, each = 6, 1000 // more than ledgerMaxPending at once
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	all := map[string]string{}
	batches := make([]map[string]string, writers)
	for w := range writers {
		batches[w] = map[string]string{}
		for _, id := range testIDs(fmt.Sprint("w", w), each) {
			batches[w][id] = id
			all[id] = id
		}
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Put(ctx, batches[w])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, 0, len(all))
	for id := range all {
		ids = append(ids, id)
	}
	got, err := l.Get(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, all) {
		t.Fatalf("got %d of %d values", len(got), len(all))
	}
}

func TestLedgerFallsBackWithoutDirectGets(t *testing.T) {
	_, js := ledgerServer(t)
	ctx := context.Background()
	openTestLedger(t, js, "LEDGER_NODIRECT")
	st, err := js.Stream(ctx, "KV_LEDGER_NODIRECT")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	l := openTestLedger(t, js, "LEDGER_NODIRECT")
	if l.batchOffUntil.Load() != math.MaxInt64 {
		t.Fatal("a stream without direct gets left batch gets on")
	}
	ids := testIDs("nd", 30)
	values := map[string]string{ids[1]: "one", ids[2]: "two", ids[29]: "last"}
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	delete(values, ids[2])
	got, err := l.Get(ctx, ids)
	if err != nil || !maps.Equal(got, values) {
		t.Fatalf("per-key fallback: %v, %v", got, err)
	}
}

func TestLedgerRemembersARefusedBatchGet(t *testing.T) {
	nc, js := ledgerServer(t)
	ctx := context.Background()
	l := openTestLedger(t, js, "LEDGER_REFUSED")
	ids := testIDs("ref", 20)
	values := map[string]string{ids[0]: "a", ids[7]: "b"}
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	// A stream nobody answers direct gets for stands for a server that
	// refuses them: no responders.
	l.directSubject = "$JS.API.DIRECT.GET.KV_NO_SUCH_STREAM"
	got, err := l.Get(ctx, ids)
	if err != nil || !maps.Equal(got, values) {
		t.Fatalf("after a refused batch get: %v, %v", got, err)
	}
	if l.batchGets() {
		t.Fatal("batch gets still on after a refusal")
	}
	if off := time.Until(time.Unix(0, l.batchOffUntil.Load())); off <= 0 || off > batchRetryAfter {
		t.Fatalf("batch gets off for %s", off)
	}
	// Meanwhile Gets go per key (a batch get would fail: no stream).
	if got, err := l.Get(ctx, ids); err != nil || !maps.Equal(got, values) {
		t.Fatalf("per-key while batch gets are off: %v, %v", got, err)
	}
	// Once the wait is over, batch gets are tried again.
	l.directSubject = "$JS.API.DIRECT.GET.KV_LEDGER_REFUSED"
	l.batchOffUntil.Store(time.Now().Add(-time.Second).UnixNano())
	requests := countRequests(t, nc, "$JS.API.DIRECT.GET.KV_LEDGER_REFUSED")
	got, err = l.Get(ctx, ids)
	if err != nil || !maps.Equal(got, values) || !l.batchGets() {
		t.Fatalf("batch get again: %v, %v, on=%v", got, err, l.batchGets())
	}
	if n := settledCount(t, nc, requests, 1); n != 1 {
		t.Fatalf("%d batch get requests after the wait, want 1", n)
	}
}

// A JetStream domain: puts go to $JS.<domain>.API.$KV..., batch gets to
// $JS.<domain>.API.DIRECT.GET..., both mapped by the server.
func TestLedgerUnderAJetStreamDomain(t *testing.T) {
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.JetStream, o.JetStreamDomain, o.StoreDir = true, "hub", t.TempDir()
	})
	nc, _ := natstest.Connect(t, ns.ClientURL())
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := openTestLedger(t, js, "LEDGER_DOMAIN")
	if l.putPre != "$JS.hub.API.$KV.LEDGER_DOMAIN." {
		t.Fatalf("put prefix %q", l.putPre)
	}
	ids := testIDs("dom", 10)
	values := map[string]string{ids[2]: "x", ids[5]: "y"}
	if err := l.Put(ctx, values); err != nil {
		t.Fatal(err)
	}
	// The server maps the domain's subjects before delivery: count the
	// requests where they land.
	requests := countRequests(t, nc, "$JS.API.DIRECT.GET.KV_LEDGER_DOMAIN")
	got, err := l.Get(ctx, ids)
	if err != nil || !maps.Equal(got, values) {
		t.Fatalf("get under a domain: %v, %v", got, err)
	}
	if n := settledCount(t, nc, requests, 1); n != 1 || !l.batchGets() {
		t.Fatalf("%d batch get requests under the domain, batch gets on=%v", n, l.batchGets())
	}
	e, err := l.kv.Get(ctx, ledgerKey(ids[5]))
	if err != nil || string(e.Value()) != "y" {
		t.Fatalf("kv get under a domain: %v, %v", e, err)
	}
}

func TestLedgerDeletedEntryHeaders(t *testing.T) {
	for _, c := range []struct {
		h    nats.Header
		want bool
	}{
		{nil, false},
		{nats.Header{"Nats-Stream": {"KV_X"}}, false},
		{nats.Header{"KV-Operation": {"DEL"}}, true},
		{nats.Header{"KV-Operation": {"PURGE"}}, true},
		{nats.Header{"KV-Operation": {"PUT"}}, false},
		{nats.Header{"Nats-Marker-Reason": {"MaxAge"}}, true},
		{nats.Header{"Nats-Marker-Reason": {"Remove"}}, true},
		{nats.Header{"Nats-Marker-Reason": {"Purge"}}, true},
		{nats.Header{"Nats-Marker-Reason": {"Other"}}, false},
	} {
		if got := deletedEntry(c.h); got != c.want {
			t.Errorf("deletedEntry(%v) = %v, want %v", c.h, got, c.want)
		}
	}
}

// fakeDirectGets points l's batch gets at a subject that handler answers,
// as a server of another version would (the real server still holds the
// bucket that per-key gets read).
func fakeDirectGets(t *testing.T, nc *nats.Conn, l *Ledger, handler func(m *nats.Msg)) {
	t.Helper()
	l.directSubject = "$JS.API.DIRECT.GET.KV_FAKE"
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_FAKE", handler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerBatchGetAgainstOtherAnswers(t *testing.T) {
	_, js := ledgerServer(t)
	ctx := context.Background()
	ids := testIDs("other", 12)
	values := map[string]string{ids[0]: "a", ids[4]: "b", ids[11]: "c"}
	setup := func(t *testing.T, name string) (*nats.Conn, *Ledger) {
		t.Helper()
		l := openTestLedger(t, js, name)
		if err := l.Put(ctx, values); err != nil {
			t.Fatal(err)
		}
		// A short wait for contexts without a deadline.
		l.timeout = 300 * time.Millisecond
		return js.Conn(), l
	}

	t.Run("server before 2.11", func(t *testing.T) {
		nc, l := setup(t, "LEDGER_OLD")
		// nats-server 2.10 reads no multi_last: an empty request to it.
		fakeDirectGets(t, nc, l, func(m *nats.Msg) {
			r := nats.NewMsg(m.Reply)
			r.Header.Set("Status", "408")
			r.Header.Set("Description", "Empty Request")
			_ = m.RespondMsg(r)
		})
		got, err := l.Get(ctx, ids)
		if err != nil || !maps.Equal(got, values) {
			t.Fatalf("fallback after a 408: %v, %v", got, err)
		}
		if l.batchGets() {
			t.Fatal("batch gets still on after a 408")
		}
	})

	t.Run("no answer before the deadline", func(t *testing.T) {
		nc, l := setup(t, "LEDGER_SILENT")
		fakeDirectGets(t, nc, l, func(*nats.Msg) {})
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		// Never "absent": a missing answer must not read as missing keys.
		got, err := l.Get(dctx, ids)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get without an answer: %v, %v", got, err)
		}
		if !l.batchGets() {
			t.Fatal("a deadline turned batch gets off")
		}
	})

	t.Run("answer cut short", func(t *testing.T) {
		nc, l := setup(t, "LEDGER_CUT")
		// One message of three, then nothing: the rest go per key.
		fakeDirectGets(t, nc, l, func(m *nats.Msg) {
			r := nats.NewMsg(m.Reply)
			r.Header.Set("Nats-Stream", "KV_FAKE")
			r.Header.Set("Nats-Subject", l.getPre+ledgerKey(ids[4]))
			r.Header.Set("Nats-Sequence", "2")
			r.Header.Set("Nats-Time-Stamp", time.Now().UTC().Format(time.RFC3339Nano))
			r.Header.Set("Nats-Num-Pending", "2")
			r.Header.Set("Nats-Last-Sequence", "0")
			r.Data = []byte("b")
			_ = m.RespondMsg(r)
		})
		got, err := l.Get(ctx, ids) // no deadline: the connection's timeout ends the wait
		if err != nil || !maps.Equal(got, values) {
			t.Fatalf("after a cut-short answer: %v, %v", got, err)
		}
		if !l.batchGets() {
			t.Fatal("a cut-short answer turned batch gets off")
		}
	})
}

func TestLedgerPutContextEndsWhileWaitingForAcks(t *testing.T) {
	nc, js := ledgerServer(t)
	l := openTestLedger(t, js, "LEDGER_NOACK")
	// A subscriber that never acks stands for a stream that does not answer.
	l.putPre = "fake.ledger."
	sub, err := nc.Subscribe("fake.ledger.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	values := map[string]string{"a": "1", "b": "2", "c": "3"}
	start := time.Now()
	err = l.Put(ctx, values)
	var perr *LedgerPutError
	if !errors.As(err, &perr) || len(perr.Failed) != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put without acks: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Put returned after %s, not at its deadline", d)
	}
	l.putMu.Lock()
	left := len(l.puts)
	l.putMu.Unlock()
	if left != 0 {
		t.Fatalf("%d puts still tracked after Put returned", left)
	}
}

func TestLedgerSubjectIsPrefixedKey(t *testing.T) {
	for _, id := range []string{"", "a", "évènement/1.*>", strings.Repeat("x", 1000)} {
		if got, want := ledgerSubject("$KV.B.", id), "$KV.B."+ledgerKey(id); got != want {
			t.Fatalf("ledgerSubject(%q) = %q, want %q", id, got, want)
		}
	}
	// The key hashing of ledgers in production: "e." and the first 20
	// bytes of the id's SHA-256, in hex.
	if got := ledgerKey("evt-1"); got != "e.7b409f932d2c88e97f0c17676c8420d3ea0dab6e" {
		t.Fatalf("ledgerKey = %q", got)
	}
}

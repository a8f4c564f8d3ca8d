package worker_test

// Fault tests (issue #7): a real nats-server, the Mautic fake with its
// fault switches, the real client and the worker. Each test runs a seeded
// random stream of events of every type through a fault and checks the
// end state: the contacts in the fake are what the events imply (the model
// in harness_extra_test.go), every input has exactly one outcome, and
// nothing was dead-lettered that was not the event's fault. Durations are
// scaled down from production's (seconds instead of minutes).
// docs/reliability.md maps each test to the fault it proves.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/mautic/mautictest"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/worker"
	"github.com/mautic-sync/mautic-sync/worker/workertest"
)

// Sizes of the streams: enough events per contact for order to matter,
// small enough for the suite's budget.
const (
	faultEvents   = 150
	faultContacts = 12
)

func faultStream(t *testing.T, n int, invalid bool) []workertest.Event {
	seed := testSeed(t)
	return workertest.Generate(rand.New(rand.NewPCG(seed, seed^0x5eed)), n, faultContacts, invalid)
}

// TestFaultMauticOutageMidStream: Mautic answers every request with its
// 503 maintenance page (HTML) for a few seconds in the middle of a stream.
// The worker retries, pauses fetching, reports not ready with the reason,
// burns no delivery and dead-letters nothing; once Mautic is back every
// event is applied.
func TestFaultMauticOutageMidStream(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	f.opts.MaxDeliveries = 2 // an outage must not count as deliveries
	events := faultStream(t, faultEvents, true)
	half := len(events) / 2
	seqs := f.publishEvents(events[:half])
	w := f.start()
	ready := watchReady(t, w)
	f.waitOutcomesAtLeast(half/3, 20*time.Second)

	f.fake.SetDown(http.StatusServiceUnavailable)
	seqs = append(seqs, f.publishEvents(events[half:])...)
	waitFor(t, 10*time.Second, func() error {
		if ok, why := w.Ready(); ok || !strings.Contains(why, worker.PauseOutage) {
			return fmt.Errorf("ready=%v %q, want not ready with reason %q", ok, why, worker.PauseOutage)
		}
		return nil
	})
	notInvalid := func() int { // dead letters that are not invalid_event
		n := 0
		for _, m := range f.deadLetters() {
			if m.Header.Get(contract.HeaderReason) != worker.ReasonInvalidEvent {
				n++
			}
		}
		return n
	}
	stalled := notInvalid()
	requests := f.fake.RequestCount()
	time.Sleep(2 * time.Second) // the outage's length, not a synchronisation
	if n := f.fake.RequestCount() - requests; n < 10 {
		t.Errorf("%d Mautic requests during a 2s outage: the worker stopped retrying", n)
	}
	if n := notInvalid(); n > stalled {
		t.Fatalf("dead letters other than invalid_event grew from %d to %d during the outage", stalled, n)
	}
	f.fake.SetDown(0)
	f.waitAll(len(events), 60*time.Second)
	ready.end()
	f.checkModel(events, seqs)

	if !ready.saw("paused, " + worker.PauseOutage) {
		t.Errorf("/readyz never said %q; reasons seen: %s", "paused, outage", ready)
	}
	if ok, why := w.Ready(); !ok {
		t.Errorf("still not ready after the outage: %s", why)
	}
	if f.logged("Mautic call failed; retrying (no event is failed for this)") == 0 || f.logged("Mautic calls succeed again") == 0 {
		t.Error("the outage and the recovery were not logged")
	}
	if n := f.counter("mautic_sync_dead_letters_total", map[string]string{"reason": worker.ReasonMaxDeliveries}); n != 0 {
		t.Errorf("mautic_sync_dead_letters_total{reason=max_deliveries} = %v after an outage, want 0", n)
	}
}

// TestFaultMauticFlapping: one Mautic request in ten fails with a 5xx (an
// HTML page or Mautic's JSON 500), and one in twenty is answered only
// after the client's timeout, although Mautic did the work. Every event is
// applied once, in order; a points adjustment whose answer was lost is not
// repeated (its result says so).
func TestFaultMauticFlapping(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	const clientTimeout = 250 * time.Millisecond
	f.useClient(mautic.WithBasicAuth("api", "test-password"), mautic.WithTimeout(clientTimeout))
	// Every tenth request fails (alternately an HTML 502 and Mautic's JSON
	// 500), every twentieth is answered late; which call a request belongs
	// to depends on the concurrent schedule.
	var mu sync.Mutex
	n, failed, slow := 0, 0, 0
	f.fake.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get(innerHeader) != "" {
			return false
		}
		mu.Lock()
		n++
		i := n
		switch {
		case i%10 == 3:
			failed++
		case i%20 == 7:
			slow++
		}
		mu.Unlock()
		switch {
		case i%20 == 3:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
			return true
		case i%20 == 13:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"errors":[{"message":"Looks like I encountered an error (error #500). If I do it again, please report me to the system administrator!","code":500,"type":null}]}`)
			return true
		case i%20 == 7:
			processThenDelay(f.fake, w, r, 2*clientTimeout)
			return true
		}
		return false
	})
	events := faultStream(t, faultEvents, true)
	seqs := f.publishEvents(events)
	f.start()
	f.waitAll(len(events), 90*time.Second)
	f.fake.SetHook(nil)
	f.checkModel(events, seqs)
	uncertain := 0
	for _, r := range f.results() {
		if r.Uncertain {
			uncertain++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests failed, %d answered after the client's timeout; %d points results uncertain", failed, slow, uncertain)
	if failed == 0 || slow == 0 {
		t.Errorf("the faults did not happen (%d failed, %d slow)", failed, slow)
	}
}

// TestFaultTokensExpireEveryFewSeconds: OAuth2 client credentials whose
// access tokens live a few seconds. In "renewed" the lifetime is shorter
// than the client's renewal margin, so each call fetches a new token; in
// "expire-in-use" Mautic's clock runs 30 times faster, so tokens the client
// believes valid expire while in use (401 invalid_grant "expired"), and
// each is replaced once and the call repeated.
func TestFaultTokensExpireEveryFewSeconds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		speedup  int64
	}{
		{"renewed", 2 * time.Second, 1},
		{"expire-in-use", 90 * time.Second, 60}, // 1.5s of real time
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			clock := func() time.Time { return start.Add(time.Duration(tc.speedup) * time.Since(start)) }
			f := newFaultHarness(t, faultConfig{fakeOpts: []mautictest.Option{
				mautictest.WithClientCredentials("1_cid", "client-secret"),
				mautictest.WithTokenLifetime(tc.lifetime), mautictest.WithClock(clock),
			}})
			f.useClient(mautic.WithClientCredentials("1_cid", "client-secret"), mautic.WithTimeout(10*time.Second))
			f.opts.BatchSize = 5 // more calls, more tokens
			events := faultStream(t, faultEvents, false)
			// The stream trickles in over several token lifetimes.
			var seqs []uint64
			const chunks = 4
			for c := range chunks {
				seqs = append(seqs, f.publishEvents(events[c*len(events)/chunks:(c+1)*len(events)/chunks])...)
				if c == 0 {
					f.start()
				}
				time.Sleep(tc.lifetime / time.Duration(tc.speedup) / 2) // the stream's rhythm, not a synchronisation
			}
			f.waitAll(len(events), 60*time.Second)
			f.checkModel(events, seqs)
			expired := 0
			for _, r := range f.fake.Requests() {
				if r.Status == http.StatusUnauthorized {
					expired++
				}
			}
			t.Logf("%d tokens issued, %d calls refused with an expired token", f.fake.TokensIssued(), expired)
			if f.fake.TokensIssued() < 2 {
				t.Errorf("%d tokens issued, want renewals", f.fake.TokensIssued())
			}
			if tc.speedup > 1 && expired == 0 {
				t.Error("no call met an expired token: the fault did not happen")
			}
		})
	}
}

// TestFaultTokensRevokedMidStream: Mautic revokes every access token
// several times while a stream runs (an administrator resetting the API
// credentials' tokens, a Mautic restart losing them). Each refused call
// gets a new token and is repeated; nothing is dead-lettered.
func TestFaultTokensRevokedMidStream(t *testing.T) {
	f := newFaultHarness(t, faultConfig{fakeOpts: []mautictest.Option{mautictest.WithClientCredentials("1_cid", "client-secret")}})
	f.useClient(mautic.WithClientCredentials("1_cid", "client-secret"), mautic.WithTimeout(10*time.Second))
	f.opts.BatchSize = 5
	events := faultStream(t, faultEvents, false)
	seqs := f.publishEvents(events)
	f.start()
	revoked := 0
	for f.outcomeCount() < len(events) && revoked < 200 {
		f.fake.RevokeAllTokens()
		revoked++
		time.Sleep(25 * time.Millisecond) // the fault's rhythm, not a synchronisation
	}
	f.waitAll(len(events), 60*time.Second)
	f.checkModel(events, seqs)
	refused := 0
	for _, r := range f.fake.Requests() {
		if r.Status == http.StatusUnauthorized {
			refused++
		}
	}
	t.Logf("tokens revoked %d times; %d calls refused, %d tokens issued", revoked, refused, f.fake.TokensIssued())
	if refused == 0 {
		t.Error("no call met a revoked token: the fault did not happen")
	}
}

// rateLimitBody is Mautic's 429 body.
const rateLimitBody = `{ "errors": [ { "code": 429, "message": "You exceeded the rate limit of 100 API calls per hour.", "details": [] } ]}`

// TestFault429Storm: a run of 429s without rate-limit headers (a proxy's
// limiter) in the middle of a stream. The worker backs off, reports
// rate_limited, and dead-letters nothing.
func TestFault429Storm(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	events := faultStream(t, faultEvents, false)
	half := len(events) / 2
	seqs := f.publishEvents(events[:half])
	w := f.start()
	ready := watchReady(t, w)
	f.waitOutcomesAtLeast(10, 20*time.Second)
	f.fake.FailNext(40, http.StatusTooManyRequests, rateLimitBody, "application/json")
	seqs = append(seqs, f.publishEvents(events[half:])...)
	f.waitAll(len(events), 60*time.Second)
	ready.end()
	f.checkModel(events, seqs)
	n429 := 0
	for _, r := range f.fake.Requests() {
		if r.Status == http.StatusTooManyRequests {
			n429++
		}
	}
	if n429 != 40 {
		t.Errorf("%d 429s answered, want the 40 of the storm", n429)
	}
	if !ready.saw(worker.PauseRateLimited) {
		t.Errorf("/readyz never said rate_limited; reasons seen: %s", ready)
	}
}

// TestFaultRateLimitHeadersMissing: Mautic's limiter is on but a proxy
// strips the X-RateLimit-* headers, so the worker cannot know when the
// window resets: it backs off and tries again, and loses nothing.
func TestFaultRateLimitHeadersMissing(t *testing.T) {
	f := newFaultHarness(t, faultConfig{fakeOpts: []mautictest.Option{mautictest.WithRateLimit(10, time.Second)}})
	f.fake.SetRateLimitHeaders(false)
	f.opts.BatchSize = 5
	events := faultStream(t, 100, false)
	seqs := f.publishEvents(events)
	f.start()
	f.waitAll(len(events), 60*time.Second)
	f.checkModel(events, seqs)
	n429 := 0
	for _, r := range f.fake.Requests() {
		if r.Status == http.StatusTooManyRequests {
			n429++
		}
	}
	t.Logf("%d 429s", n429)
	if n429 == 0 {
		t.Error("no 429: the fault did not happen")
	}
}

// TestFaultRateLimitHeadersWrong: the X-RateLimit-* headers are present
// but wrong: not numbers, negative, a reset in the past, in milliseconds,
// or a century ahead with nothing remaining. None may stop the worker for
// longer than Mautic's window (an hour); here, where Mautic has no limit,
// every event is applied at once.
func TestFaultRateLimitHeadersWrong(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	now := time.Now()
	bogus := []map[string]string{
		{"X-RateLimit-Limit": "abc", "X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "soon"},
		{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)},
		{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)},
		{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10)},
		{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.AddDate(100, 0, 0).Unix(), 10)},
		{"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"},
	}
	var mu sync.Mutex
	i := 0
	f.fake.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		h := bogus[i%len(bogus)]
		i++
		mu.Unlock()
		for k, v := range h {
			w.Header().Set(k, v)
		}
		return false // the fake answers, with these headers
	})
	f.opts.BatchSize = 5
	events := faultStream(t, 100, false)
	seqs := f.publishEvents(events)
	f.start()
	f.waitAll(len(events), 30*time.Second)
	f.checkModel(events, seqs)
}

// TestFaultNATSServerRestart: the NATS server stops in the middle of
// processing and starts again on the same port and store. Fetches,
// outcome publishes, acks and ledger writes fail meanwhile; the worker
// keeps its held messages, retries, and afterwards every input has exactly
// one outcome (repeats are de-duplicated by Nats-Msg-Id and the ledger).
func TestFaultNATSServerRestart(t *testing.T) {
	f := newFaultHarness(t, faultConfig{restartable: true, ackWait: 3 * time.Second})
	f.fake.SetLatency(5*time.Millisecond, 0)
	events := workertest.WithoutRejects(faultStream(t, faultEvents, true)) // see TestFaultLostTermOfDeadLetter
	seqs := f.publishEvents(events)
	f.start()
	f.waitOutcomesAtLeast(len(events)/4, 30*time.Second)
	f.stopNATS()
	time.Sleep(time.Second) // the outage's length, not a synchronisation
	f.startNATS()
	f.waitAll(len(events), 90*time.Second)
	f.checkModel(events, seqs)
	for _, msg := range []string{"disconnected from NATS; reconnecting", "reconnected to NATS", "fetch failed; retrying"} {
		if f.logged(msg) == 0 {
			t.Errorf("the NATS outage did not log %q", msg)
		}
	}
}

// TestFaultNATSConnectionCut: the network between the worker and NATS
// fails twice in the middle of processing (every connection reset, new
// ones refused for a while) and comes back, while the server stays up.
func TestFaultNATSConnectionCut(t *testing.T) {
	f := newFaultHarness(t, faultConfig{proxy: true, ackWait: 3 * time.Second})
	f.fake.SetLatency(5*time.Millisecond, 0)
	events := workertest.WithoutRejects(faultStream(t, faultEvents, true)) // see TestFaultLostTermOfDeadLetter
	seqs := f.publishEvents(events)
	f.start()
	for k := 1; k <= 2; k++ {
		f.waitOutcomesAtLeast(k*len(events)/4, 30*time.Second)
		f.proxy.cut()
		waitFor(t, 5*time.Second, func() error {
			if f.wnc.IsConnected() {
				return fmt.Errorf("the worker's connection is still up")
			}
			return nil
		})
		time.Sleep(500 * time.Millisecond) // the length of the cut, not a synchronisation
		f.proxy.restore()
		waitFor(t, 10*time.Second, func() error {
			if !f.wnc.IsConnected() {
				return fmt.Errorf("the worker has not reconnected")
			}
			return nil
		})
	}
	f.waitAll(len(events), 90*time.Second)
	f.checkModel(events, seqs)
	for _, msg := range []string{"disconnected from NATS; reconnecting", "reconnected to NATS"} {
		if f.logged(msg) < 2 {
			t.Errorf("%q logged %d times for 2 cuts", msg, f.logged(msg))
		}
	}
}

// TestFaultOutcomeStreamsRefusePublishes: in the middle of a stream the
// result stream stops capturing the result subject (publishes get no
// answer) and the dead-letter stream is deleted; both come back later.
// While an outcome cannot be stored its input stays unacknowledged; after,
// every input has exactly one outcome.
func TestFaultOutcomeStreamsRefusePublishes(t *testing.T) {
	f := newFaultHarness(t, faultConfig{})
	ctx := context.Background()
	events := faultStream(t, faultEvents, true)
	third := len(events) / 3
	seqs := f.publishEvents(events[:third])
	f.start()
	f.waitAll(third, 30*time.Second)

	// Park the result stream on another subject; delete the DLQ stream
	// (keeping what it held, to count it).
	rs, err := f.js.Stream(ctx, f.topo.ResultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rs.CachedInfo().Config
	cfg.Subjects = []string{"parked.results"}
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	lost := f.streamSnapshot(f.topo.DLQStream)
	if err := f.js.DeleteStream(ctx, f.topo.DLQStream); err != nil {
		t.Fatal(err)
	}
	stored := len(f.streamMsgs(f.topo.ResultStream))
	calls := f.fake.RequestCount()
	seqs = append(seqs, f.publishEvents(events[third:2*third])...)
	// Mautic is called for the new events (each contact's first one: its
	// later events wait for that outcome, which cannot be stored; batching
	// makes the number of calls depend on the stream), but nothing is
	// stored or acked.
	waitFor(t, 20*time.Second, func() error {
		if f.fake.RequestCount() < calls+1 {
			return fmt.Errorf("%d Mautic calls for the new events", f.fake.RequestCount()-calls)
		}
		return nil
	})
	waitFor(t, 10*time.Second, func() error {
		if f.logged("outcomes not stored; retrying, inputs stay unacknowledged") == 0 {
			return fmt.Errorf("no warning yet")
		}
		return nil
	})
	cons, err := f.js.Consumer(ctx, f.topo.Stream, f.topo.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream > seqs[third-1] {
		t.Errorf("ack floor at %d, past the last input (%d) before the outcome streams went away", info.AckFloor.Stream, seqs[third-1])
	}
	if info.NumAckPending+int(info.NumPending) == 0 {
		t.Error("every input acknowledged while no outcome can be stored")
	}
	if n := len(f.streamMsgs(f.topo.ResultStream)); n != stored {
		t.Errorf("the parked result stream grew from %d to %d", stored, n)
	}

	// Both come back.
	cfg.Subjects = []string{f.topo.ResultSubject}
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Ensure(ctx, f.js, f.topo, true); err != nil { // recreates the DLQ stream
		t.Fatal(err)
	}
	seqs = append(seqs, f.publishEvents(events[2*third:])...)
	f.waitAll(len(events)-len(lost), 60*time.Second)
	f.checkModel(events, seqs, lost...)
}

// TestFaultGracefulStopUnderLoad: Run's context is cancelled while Mautic
// calls are in flight; the worker lets them finish, stores their outcomes,
// hands the rest back and returns nil. A new worker then finishes the
// stream: nothing is lost and nothing is repeated, neither an outcome nor
// a write to Mautic.
func TestFaultGracefulStopUnderLoad(t *testing.T) {
	f := newFaultHarness(t, faultConfig{ackWait: 2 * time.Second})
	f.fake.SetLatency(80*time.Millisecond, time.Millisecond)
	f.opts.BatchSize = 5
	events := faultStream(t, faultEvents, true)
	seqs := f.publishEvents(events)
	for round := 1; round <= 2; round++ {
		w := f.start()
		f.waitOutcomesAtLeast(round*len(events)/4, 30*time.Second)
		waitFor(t, 10*time.Second, func() error {
			if w.InFlight() == 0 {
				return fmt.Errorf("no call in flight")
			}
			return nil
		})
		stopped := time.Now()
		f.stop() // cancels Run and fails the test unless it returns nil
		if d := time.Since(stopped); d > f.opts.DrainTimeout+time.Second {
			t.Errorf("drain took %s, over WORKER_DRAIN_TIMEOUT %s", d, f.opts.DrainTimeout)
		}
		if w.InFlight() != 0 {
			t.Errorf("%d calls still in flight after Run returned", w.InFlight())
		}
	}
	f.start()
	f.waitAll(len(events), 60*time.Second)
	f.checkModel(events, seqs)
	if f.logged("draining") < 2 {
		t.Errorf("the drain was not logged")
	}

	// No points adjustment was sent twice (the one write that is not
	// idempotent): its calls are tagged with the event id.
	calls := map[string]int{}
	for _, r := range f.fake.Requests() {
		if strings.Contains(r.Path, "/points/") {
			calls[string(r.Body)]++
		}
	}
	for body, n := range calls {
		if n > 1 {
			t.Errorf("points call sent %d times: %s", n, body)
		}
	}
}

// TestFaultRestartAfterDeadLetterDoesNotStall: a worker stops gracefully
// while a message of contact B waits behind B's call in flight (it is
// handed back, so the ack floor stays below it) and after contact A's
// event was dead-lettered. The next worker must not hold A's new events
// back waiting for the redelivery of A's dead-lettered message, which
// never comes (it was terminated).
func TestFaultRestartAfterDeadLetterDoesNotStall(t *testing.T) {
	f := newFaultHarness(t, faultConfig{ackWait: 10 * time.Second})
	f.opts.Linger = time.Millisecond
	release := make(chan struct{})
	var once sync.Once
	f.fake.SetHook(func(w http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if strings.Contains(string(body), "b-slow") {
			<-release // B's first call is in flight until released
		}
		return false
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	f.publish("mautic.contacts.b", event("b1", worker.TypeUpsert, map[string]any{"email": "b@example.com", "fields": map[string]any{"city": "b-slow"}}))
	f.publish("mautic.contacts.b", event("b2", worker.TypeSegmentAdd, map[string]any{"email": "b@example.com", "segment_id": 1}))
	f.publish("mautic.contacts.a", event("a1", worker.TypePointsAdd, map[string]any{"email": "a@example.com", "delta": 1})) // no contact: rejected
	w := f.start()
	waitFor(t, 10*time.Second, func() error {
		if len(f.deadLetters()) != 1 || w.InFlight() == 0 {
			return fmt.Errorf("%d dead letters, %d calls in flight", len(f.deadLetters()), w.InFlight())
		}
		return nil
	})
	go func() { time.Sleep(200 * time.Millisecond); once.Do(func() { close(release) }) }() // B's call ends during the drain
	f.stop()

	f.start()
	f.publish("mautic.contacts.a", event("a2", worker.TypeUpsert, map[string]any{"email": "a@example.com", "fields": map[string]any{"city": "Oslo"}}))
	started := time.Now()
	waitFor(t, 20*time.Second, func() error {
		if len(f.fake.ContactsByEmail("a@example.com")) == 0 {
			return fmt.Errorf("a2 not applied")
		}
		return nil
	})
	if d := time.Since(started); d > 3*time.Second {
		t.Errorf("contact A's new event waited %s after the restart (AckWait is %s): it waited for a dead-lettered message to come back", d.Round(time.Millisecond), f.opts.AckWait)
	}
	f.waitAll(4, 20*time.Second)
}

// TestFaultPoisonMessageDeadLetteredAfterCrashes: a message whose
// processing kills the worker (simulated: a consumer takes it and never
// answers, as a crashed process does) is delivered again and again. Once
// over WORKER_MAX_DELIVERIES, the next worker must dead-letter it
// (max_deliveries) instead of processing it again, also when it finds the
// message among those an earlier worker left unacknowledged.
func TestFaultPoisonMessageDeadLetteredAfterCrashes(t *testing.T) {
	f := newFaultHarness(t, faultConfig{ackWait: time.Second})
	f.opts.MaxDeliveries = 2
	seq := f.publish("mautic.contacts.p", event("p1", worker.TypeUpsert, map[string]any{"email": "poison@example.com", "fields": map[string]any{"city": "X"}}))
	ctx := context.Background()
	cons, err := f.js.Consumer(ctx, f.topo.Stream, f.topo.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= f.opts.MaxDeliveries+1; d++ { // each delivery "crashes" a worker
		waitFor(t, 10*time.Second, func() error {
			b, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return err
			}
			for m := range b.Messages() {
				md, _ := m.Metadata()
				if md.NumDelivered == uint64(d) {
					return nil
				}
			}
			return fmt.Errorf("delivery %d not seen yet", d)
		})
	}
	f.start()
	f.waitAll(1, 20*time.Second)
	dl := f.deadLetters()
	if len(dl) != 1 || dl[0].Header.Get(contract.HeaderReason) != worker.ReasonMaxDeliveries {
		t.Errorf("outcome of message %d delivered %d times: %d dead letters %v, results %+v; want a max_deliveries dead letter",
			seq, f.opts.MaxDeliveries+2, len(dl), dl, f.results())
	}
}

// TestFaultLostTermOfDeadLetter: a dead letter is stored, but the Term
// that should retire its input is lost (the connection broke before NATS
// read it; found by TestFaultNATSServerRestart). The input comes back
// after AckWait, when its contact's later events have gone on: it must
// end in its one outcome (the same dead letter, de-duplicated), not be
// processed again against a changed Mautic.
func TestFaultLostTermOfDeadLetter(t *testing.T) {
	lossy := &lossySource{}
	lossy.drop.Store(1)
	f := newFaultHarness(t, faultConfig{ackWait: time.Second, wrapSource: func(s worker.Source) worker.Source {
		lossy.Source = s
		return lossy
	}})
	s := "mautic.contacts.lost"
	f.publish(s, event("pts", worker.TypePointsAdd, map[string]any{"email": "lost@example.com", "delta": 5})) // no contact yet: rejected
	f.publish(s, event("up", worker.TypeUpsert, map[string]any{"email": "lost@example.com", "fields": map[string]any{"city": "Oslo"}}))
	f.start()
	f.waitAll(2, 20*time.Second) // drained: the redelivery of the first is settled too
	if c := f.fake.ContactsByEmail("lost@example.com"); len(c) != 1 || c[0].Points != 0 {
		t.Errorf("contact %+v, want points 0 (the points event was dead-lettered before the upsert)", c)
	}
	if dl := f.deadLetters(); len(dl) != 1 || len(f.results()) != 1 {
		t.Errorf("%d dead letters and %d results, want 1 and 1", len(dl), len(f.results()))
	}
}

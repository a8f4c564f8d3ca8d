package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Ledger is a JetStream key-value bucket of event ids that took effect.
// Keys are hashes of the ids (event ids may hold any characters); values
// are opaque strings that the caller encodes. Entries expire after the
// bucket's TTL.
//
// The bulk operations are pipelined: Get reads the last message of many
// keys with one batch direct get (multi_last, nats-server 2.11 or later,
// allow_direct on the bucket's stream) and Put publishes all values
// asynchronously and then waits for their acks. Where the server refuses
// batch gets, Get falls back to one request per key.
type Ledger struct {
	kv jetstream.KeyValue
	// js is the Ledger's own JetStream context for Put, on the caller's
	// connection and API prefix: its async publish window and ack timeout
	// are the Ledger's, apart from the caller's publishes and handlers.
	js jetstream.JetStream
	// getPre prefixes a key to make its subject in the bucket's stream and
	// putPre a key to make the subject a put is published to (as nats.go's
	// KeyValue does, also under an API prefix or domain and for a mirror).
	getPre, putPre string
	// puts are the Ledger's puts awaiting their acks.
	putMu sync.Mutex
	puts  map[*nats.Msg]putWait
	// leader is set when the bucket has more than one replica: a batch
	// direct get's answer is used only when it is as fresh as the stream
	// leader's last sequence asked just before, else the ids are read from
	// the leader, one request per key (see leaderReads and Get).
	leader *leaderReads
	// markSubject is the freshness mark's subject; markMissing is set
	// when a batch get found no mark (Get stores it again).
	markSubject string
	markMissing atomic.Bool
	// staleBatches counts the batch gets answered by a replica behind the
	// leader (or without the mark), read again from the leader.
	staleBatches atomic.Int64
	// batchOffUntil is when (UnixNano) Get may try batch gets again after
	// the server refused one; math.MaxInt64 when the stream has no direct
	// gets at all.
	batchOffUntil atomic.Int64

	// Batch direct gets: requests go to directSubject (the bucket stream's
	// DIRECT.GET under the API prefix); the answers of all come on one
	// subscription to respPrefix+"*" (made on first use), the last token
	// telling whose they are. (orbit.go's jetstreamext.GetLastMsgsFor
	// subscribes anew for each request, with a 512 KiB channel: half the
	// cost of a Get.)
	nc            *nats.Conn
	directSubject string
	timeout       time.Duration // of a batch get whose context has no deadline
	mu            sync.Mutex
	respSub       *nats.Subscription
	respPrefix    string
	nextToken     uint64
	waiting       map[string]chan *nats.Msg
}

// LedgerOptions configures the bucket.
type LedgerOptions struct {
	Bucket string
	// TTL is how long an id is remembered; it must be at least the input
	// stream's duplicate window.
	TTL time.Duration
	// Create makes the bucket when it is missing.
	Create bool
}

const (
	// ledgerMaxPending bounds the Ledger's async puts awaiting an ack, over
	// all its concurrent Put calls; a Put past it waits for room.
	ledgerMaxPending = 4096
	// ledgerAckTimeout is how long an async put waits for its ack at most
	// (a Put's context may end the wait sooner).
	ledgerAckTimeout = 10 * time.Second
	// multiLastChunk is the number of keys asked for in one batch get. The
	// server answers at most 1024 subjects per multi_last request (413 Too
	// Many Results past that) and holds its stream's read lock while it
	// sends them; smaller requests, run side by side, keep that short.
	multiLastChunk = 256
	// maxBatchParallel bounds concurrent batch gets of one Get.
	maxBatchParallel = 4
	// batchRetryAfter is how long Get keeps to per-key gets after the
	// server refused a batch get, before it tries one again (the refusal
	// may be passing: a leader change, a rolling upgrade).
	batchRetryAfter = 5 * time.Minute
)

// OpenLedger binds to (or creates) the ledger bucket.
func OpenLedger(ctx context.Context, js jetstream.JetStream, o LedgerOptions) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, o.Bucket)
	switch {
	case err == nil:
		return newLedger(ctx, js, kv)
	case !errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, fmt.Errorf("queue: open ledger bucket %s: %w", o.Bucket, err)
	case !o.Create:
		return nil, fmt.Errorf("queue: ledger bucket %s does not exist and CREATE_STREAMS is false: create it (key-value, TTL %s) or set CREATE_STREAMS=true", o.Bucket, o.TTL)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "mautic-sync: event ids that took effect",
		TTL:         o.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, o.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: create ledger bucket %s: %w", o.Bucket, err)
	}
	return newLedger(ctx, js, kv)
}

// newLedger reads the bucket's stream configuration and makes the
// Ledger's own JetStream context.
func newLedger(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*Ledger, error) {
	streamName := "KV_" + kv.Bucket()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("queue: ledger stream %s: %w", streamName, err)
	}
	cfg := st.CachedInfo().Config

	// The caller's API prefix, as nats.go's KeyValue uses it.
	opts := js.Options()
	prefix := apiPrefix(js)
	l := &Ledger{kv: kv, puts: map[*nats.Msg]putWait{}, waiting: map[string]chan *nats.Msg{}}
	jsOpts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(ledgerMaxPending),
		jetstream.WithPublishAsyncTimeout(ledgerAckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { l.putSettled(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { l.putSettled(m, err) }),
	}
	if opts.DefaultTimeout > 0 {
		jsOpts = append(jsOpts, jetstream.WithDefaultTimeout(opts.DefaultTimeout))
	}
	own, err := jetstream.NewWithAPIPrefix(js.Conn(), prefix, jsOpts...)
	if err != nil {
		return nil, fmt.Errorf("queue: ledger jetstream context: %w", err)
	}

	// Subjects as nats.go's mapStreamToKVS makes them.
	bucket := strings.TrimPrefix(cfg.Name, "KV_")
	pre, putPre := "$KV."+bucket+".", ""
	useJSPfx := prefix != jetstream.DefaultAPIPrefix
	if m := cfg.Mirror; m != nil {
		origin := strings.TrimPrefix(m.Name, "KV_")
		if m.External != nil && m.External.APIPrefix != "" {
			useJSPfx = false
			pre = "$KV." + origin + "."
			putPre = m.External.APIPrefix + ".$KV." + origin + "."
		} else {
			putPre = "$KV." + origin + "."
		}
	}
	if putPre == "" {
		putPre = pre
	}
	if useJSPfx {
		putPre = prefix + putPre
	}

	timeout := opts.DefaultTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	l.js, l.getPre, l.putPre = own, pre, putPre
	l.nc, l.directSubject, l.timeout = js.Conn(), prefix+"DIRECT.GET."+cfg.Name, timeout
	if !cfg.AllowDirect {
		// No direct gets at all (a bucket made before nats-server 2.9, or
		// changed by hand): nats.go's KeyValue uses plain gets too.
		l.batchOffUntil.Store(math.MaxInt64)
	}
	if cfg.Replicas > 1 {
		// Followers answer direct gets with what they have applied so far
		// (see leaderReads): an id another replica recorded a moment ago
		// could read as unknown and its event be applied twice.
		r := newLeaderReads(js, cfg.Name)
		l.leader = &r
		l.markSubject = l.getPre + markKey
		l.markMissing.Store(true)
		l.remark(ctx)
	}
	return l, nil
}

func ledgerKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "e." + hex.EncodeToString(sum[:20])
}

// maxParallel bounds concurrent key-value requests of one call.
const maxParallel = 32

// Get returns the stored value of each id that has one.
func (l *Ledger) Get(ctx context.Context, ids []string) (map[string]string, error) {
	if len(ids) == 0 {
		return map[string]string{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("queue: ledger get: %w", err)
	}
	switch {
	case !l.batchGets() && l.leader != nil:
		return l.getLeader(ctx, ids)
	case !l.batchGets():
		return l.getEach(ctx, ids)
	}
	// On a replicated bucket, the batch is read from any replica and then
	// checked fresh (see getFresh); the leader's last sequence is asked
	// first.
	var floor uint64
	if l.leader != nil {
		f, err := l.leader.lastSeq(ctx)
		if err != nil {
			return l.getLeader(ctx, ids) // and its error, if the leader cannot be reached
		}
		floor = f
	}
	chunk := multiLastChunk
	// One subject per distinct id, in the order given.
	want := make(map[string]string, len(ids)) // subject → id
	subjects := make([]string, 0, len(ids))
	for _, id := range ids {
		s := ledgerSubject(l.getPre, id)
		if _, dup := want[s]; !dup {
			want[s] = id
			subjects = append(subjects, s)
		}
	}
	if l.leader != nil {
		chunk-- // room for the freshness mark in every chunk
		want[l.markSubject] = markID
	}
	out := make(map[string]string)
	var rest []string // ids to look up one by one
	fresh := true
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxBatchParallel)
	for start := 0; start < len(subjects); start += chunk {
		part := subjects[start:min(start+chunk, len(subjects))]
		if l.leader != nil {
			part = append(slices.Clip(part), l.markSubject)
		}
		g.Go(func() error {
			found := make(map[string]string)
			r, upTo, err := l.getBatch(gctx, part, want, found, l.leader != nil)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if l.leader != nil {
				_, marked := found[markID]
				delete(found, markID)
				if !marked || upTo < floor || len(r) > 0 {
					fresh = false
					if !marked {
						l.markMissing.Store(true)
					}
				}
			}
			for id, v := range found {
				out[id] = v
			}
			rest = append(rest, r...)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if l.leader != nil {
		if !fresh {
			l.staleBatches.Add(1)
			l.remark(ctx)
			return l.getLeader(ctx, ids)
		}
		return out, nil
	}
	if len(rest) > 0 {
		found, err := l.getEach(ctx, rest)
		if err != nil {
			return nil, err
		}
		for id, v := range found {
			out[id] = v
		}
	}
	return out, nil
}

// markKey is the key that every batch get of a replicated ledger asks for
// besides its ids, so that the answer ends with the responder's last
// sequence (an answer with no key at all has none). Its value means
// nothing. Outside the hashed ids' "e." keys, it is no event's; markID
// stands for it among a batch get's ids (an id is never empty).
const (
	markKey = "m.fresh"
	markID  = ""
)

// remark stores the freshness mark again if a batch get found it missing
// (it expires with the bucket's TTL, or was never stored).
func (l *Ledger) remark(ctx context.Context) {
	if !l.markMissing.CompareAndSwap(true, false) {
		return
	}
	if _, err := l.kv.Put(ctx, markKey, []byte("1")); err != nil {
		l.markMissing.Store(true) // the next Get tries again
	}
}

// batchGets tells whether Get should try batch gets.
func (l *Ledger) batchGets() bool {
	return l.batchOffUntil.Load() <= time.Now().UnixNano()
}

// getBatch reads the last message of each subject (at most
// multiLastChunk) with one batch direct get, adds the ids that have a live
// value to out and returns the ids whose answer it did not get: all of
// them when the server refused the batch get, those after a cut-short
// answer.
//
// With untilEOB it reads on to the end-of-batch message and returns the
// responder's last stream sequence at the time of the read
// (Nats-UpTo-Sequence); 0 when no such message came.
func (l *Ledger) getBatch(ctx context.Context, subjects []string, want map[string]string, out map[string]string, untilEOB bool) ([]string, uint64, error) {
	answers, done, err := l.requestMultiLast(subjects)
	if err != nil {
		return nil, 0, fmt.Errorf("queue: ledger batch get: %w", err)
	}
	defer done()
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(l.timeout)
		defer t.Stop()
		expired = t.C
	}
	seen := make(map[string]bool, len(subjects))
	complete := false
	var upTo uint64
wait:
	for {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("queue: ledger batch get: %w", ctx.Err())
		case <-expired:
			break wait // no (whole) answer: per key for the rest
		}
		if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
			switch status {
			case "204": // end of batch
				complete = m.Header.Get("Nats-Num-Pending") == "0"
				upTo, _ = strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
			case "404":
				// "No Results": none of the keys has a message. Another
				// 404 (a message found but not loaded) leaves the keys
				// not answered to per-key gets.
				complete = m.Header.Get("Description") == "No Results" && len(seen) == 0
			case "408", "412", "413", "503":
				// A refusal: a server before 2.11 reads no multi_last
				// (408 Empty Request), nobody answers direct gets for
				// the stream (503), too many subjects for this server.
				l.refuseBatch()
			default:
				return nil, 0, fmt.Errorf("queue: ledger batch get: %s %s", status, m.Header.Get("Description"))
			}
			break wait
		}
		pending := m.Header.Get("Nats-Num-Pending")
		if pending == "" {
			// Not a batch get's answer.
			l.refuseBatch()
			break wait
		}
		subj := m.Header.Get("Nats-Subject")
		if id, ok := want[subj]; ok && !seen[subj] {
			seen[subj] = true
			if !deletedEntry(m.Header) {
				out[id] = string(m.Data)
			}
		}
		// The server counts down the messages still to come (it stops
		// early past its max_pending bytes, for instance).
		if pending == "0" && !untilEOB {
			complete = true
			break wait
		}
	}
	if complete {
		return nil, upTo, nil
	}
	rest := make([]string, 0, len(subjects)-len(seen))
	for _, s := range subjects {
		if !seen[s] {
			rest = append(rest, want[s])
		}
	}
	return rest, upTo, nil
}

// refuseBatch turns batch gets off for a while.
func (l *Ledger) refuseBatch() {
	l.batchOffUntil.Store(time.Now().Add(batchRetryAfter).UnixNano())
}

// multiLastRequest is a batch direct get of the last message of each of
// some subjects (nats-server 2.11 and later).
type multiLastRequest struct {
	MultiLast []string `json:"multi_last"`
}

// requestMultiLast sends a batch direct get and returns the channel its
// answers come on and the func to call once done with it.
func (l *Ledger) requestMultiLast(subjects []string) (<-chan *nats.Msg, func(), error) {
	req, err := json.Marshal(multiLastRequest{MultiLast: subjects})
	if err != nil {
		return nil, nil, err
	}
	// Room for an answer per subject and the end of batch: routeAnswer
	// never blocks.
	replies, ch, done, err := l.expect(1, len(subjects)+1)
	if err != nil {
		return nil, nil, err
	}
	if err := l.nc.PublishMsg(&nats.Msg{Subject: l.directSubject, Reply: replies[0], Data: req}); err != nil {
		done()
		return nil, nil, err
	}
	return ch, done, nil
}

// expect makes n reply subjects whose answers all come on one channel of
// room answers, and the func to call once done with them.
func (l *Ledger) expect(n, room int) ([]string, chan *nats.Msg, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.respSub == nil || !l.respSub.IsValid() {
		prefix := l.nc.NewInbox() + "."
		sub, err := l.nc.Subscribe(prefix+"*", l.routeAnswer)
		if err != nil {
			return nil, nil, nil, err
		}
		l.respSub, l.respPrefix = sub, prefix
	}
	ch := make(chan *nats.Msg, room)
	replies := make([]string, n)
	tokens := make([]string, n)
	for i := range n {
		l.nextToken++
		tokens[i] = strconv.FormatUint(l.nextToken, 36)
		replies[i] = l.respPrefix + tokens[i]
		l.waiting[tokens[i]] = ch
	}
	done := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, t := range tokens {
			delete(l.waiting, t)
		}
	}
	return replies, ch, done, nil
}

// getLeaderChunk reads the last message of each subject (at most
// multiLastChunk) from the stream leader: one message get request per
// subject, all sent before the answers are awaited.
func (l *Ledger) getLeaderChunk(ctx context.Context, subjects []string) ([]lastMsg, error) {
	replies, ch, done, err := l.expect(len(subjects), len(subjects))
	if err != nil {
		return nil, err
	}
	defer done()
	index := make(map[string]int, len(subjects))
	for i, subj := range subjects {
		index[replies[i]] = i
		req := make([]byte, 0, len(subj)+20)
		req = append(req, `{"last_by_subj":"`...)
		req = append(req, subj...) // key subjects need no JSON escaping
		req = append(req, `"}`...)
		if err := l.nc.PublishMsg(&nats.Msg{Subject: l.leader.subject, Reply: replies[i], Data: req}); err != nil {
			return nil, err
		}
	}
	var expired <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(l.timeout)
		defer t.Stop()
		expired = t.C
	}
	out := make([]lastMsg, len(subjects))
	for left := len(subjects); left > 0; left-- {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-expired:
			return nil, fmt.Errorf("%d of %d reads from the stream leader unanswered after %s (no stream leader?)", left, len(subjects), l.timeout)
		}
		i, ok := index[m.Subject]
		if !ok {
			left++
			continue
		}
		if m.Header.Get("Status") == "503" {
			return nil, fmt.Errorf("read from the stream leader: %w", nats.ErrNoResponders)
		}
		if out[i], err = decodeMsgGet(m.Data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// routeAnswer hands an answer to the batch get waiting for it.
func (l *Ledger) routeAnswer(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	l.mu.Lock()
	ch := l.waiting[token]
	l.mu.Unlock()
	if ch == nil {
		return // its Get gave up
	}
	select {
	case ch <- m:
	default: // more answers than asked for: the Get ends on its own
	}
}

// deletedEntry tells whether a key's last message marks it deleted or
// purged, as nats.go's KeyValue.Get reads it (then reporting
// ErrKeyNotFound).
func deletedEntry(h nats.Header) bool {
	if len(h) == 0 {
		return false
	}
	if op := h.Get("KV-Operation"); op != "" {
		return op == "DEL" || op == "PURGE"
	}
	switch h.Get(jetstream.MarkerReasonHeader) {
	case "MaxAge", "Purge", "Remove":
		return true
	}
	return false
}

// getEach looks ids up one request per key, maxParallel at a time: Get's
// way where the server has no batch gets.
func (l *Ledger) getEach(ctx context.Context, ids []string) (map[string]string, error) {
	vals := make([]string, len(ids))
	found := make([]bool, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallel)
	for i, id := range ids {
		g.Go(func() error {
			e, err := l.kv.Get(gctx, ledgerKey(id))
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				return nil
			case err != nil:
				return fmt.Errorf("queue: ledger get: %w", err)
			}
			vals[i], found[i] = string(e.Value()), true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, id := range ids {
		if found[i] {
			out[id] = vals[i]
		}
	}
	return out, nil
}

// getLeader looks ids up from the stream leader, one request per key,
// maxParallel at a time: Get's way on a replicated bucket.
func (l *Ledger) getLeader(ctx context.Context, ids []string) (map[string]string, error) {
	subjects := make([]string, len(ids))
	for i, id := range ids {
		subjects[i] = ledgerSubject(l.getPre, id)
	}
	out := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxBatchParallel)
	for start := 0; start < len(subjects); start += multiLastChunk {
		end := min(start+multiLastChunk, len(subjects))
		g.Go(func() error {
			got, err := l.getLeaderChunk(gctx, subjects[start:end])
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for i, m := range got {
				if m.live() {
					out[ids[start+i]] = string(m.value)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("queue: ledger get: %w", err)
	}
	return out, nil
}

// Create stores value for id unless the id has a value; then it returns
// that value and false.
func (l *Ledger) Create(ctx context.Context, id, value string) (string, bool, error) {
	key := ledgerKey(id)
	_, prior, created, err := createKey(ctx, l.kv, l.leader, ledgerSubject(l.getPre, id), key, []byte(value))
	if err != nil {
		return "", false, fmt.Errorf("queue: ledger create: %w", err)
	}
	if created {
		return "", true, nil
	}
	return string(prior.value), false, nil
}

// LedgerPutError is Put's error: the ids whose values the stream did not
// confirm storing. Some of them may be stored all the same (a put whose
// ack was lost or came after the context ended).
type LedgerPutError struct {
	// Failed tells why for each id.
	Failed map[string]error
	// Total is the number of ids Put was given.
	Total int
}

func (e *LedgerPutError) Error() string {
	ids := make([]string, 0, len(e.Failed))
	for id := range e.Failed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "queue: ledger put: %d of %d values not confirmed stored:", len(ids), e.Total)
	const shown = 5
	for i, id := range ids {
		if i == shown {
			fmt.Fprintf(&b, " and %d more", len(ids)-shown)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %q: %v", id, e.Failed[id])
	}
	return b.String()
}

// Unwrap returns the distinct causes, for errors.Is and errors.As.
func (e *LedgerPutError) Unwrap() []error {
	var out []error
	seen := map[string]bool{}
	for _, err := range e.Failed {
		if k := err.Error(); !seen[k] {
			seen[k] = true
			out = append(out, err)
		}
	}
	return out
}

// Put stores values, overwriting. It publishes them all before it waits
// for their acks; when it returns nil the stream has stored every one,
// else its error is a *LedgerPutError naming the ids not confirmed.
func (l *Ledger) Put(ctx context.Context, values map[string]string) error {
	if len(values) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue: ledger put: %w", err)
	}
	b := &putBatch{left: len(values), done: make(chan struct{})}
	msgs := make([]nats.Msg, 0, len(values))
	var pubErr error // once set, the rest are not sent
	for id, v := range values {
		if pubErr == nil {
			pubErr = ctx.Err()
		}
		if pubErr != nil {
			b.settle(id, pubErr)
			continue
		}
		msgs = append(msgs, nats.Msg{Subject: ledgerSubject(l.putPre, id), Data: []byte(v)})
		m := &msgs[len(msgs)-1]
		l.putMu.Lock()
		l.puts[m] = putWait{b, id}
		l.putMu.Unlock()
		for {
			_, err := l.js.PublishMsgAsync(m)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil {
				continue // the window is full: wait on for room
			}
			if err != nil {
				// Not sent: no handler hears of it.
				pubErr = err
				if ctx.Err() != nil {
					pubErr = ctx.Err()
				}
				l.putSettled(m, pubErr)
			}
			break
		}
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		// Take the acks already in and count the rest as failed.
		for i := range msgs {
			l.putSettled(&msgs[i], ctx.Err())
		}
		<-b.done
	}
	if b.failed != nil {
		return &LedgerPutError{Failed: b.failed, Total: len(values)}
	}
	return nil
}

// putBatch tracks the puts of one Put call.
type putBatch struct {
	mu     sync.Mutex
	left   int              // puts not yet settled
	failed map[string]error // why, for the ids that failed
	done   chan struct{}    // closed when none are left
}

func (b *putBatch) settle(id string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		if b.failed == nil {
			b.failed = make(map[string]error)
		}
		b.failed[id] = err
	}
	if b.left--; b.left == 0 {
		close(b.done)
	}
}

// putWait is a put awaiting its ack.
type putWait struct {
	b  *putBatch
	id string
}

// putSettled settles the put of m, if it still awaits that: from the
// Ledger's JetStream context's ack and error handlers (an ack, an error
// answer, an ack timeout, a reconnect) and from Put itself. Settling
// through the handlers saves a channel pair and a wakeup a put.
func (l *Ledger) putSettled(m *nats.Msg, err error) {
	l.putMu.Lock()
	w, ok := l.puts[m]
	delete(l.puts, m)
	l.putMu.Unlock()
	if ok {
		w.b.settle(w.id, err)
	}
}

// ledgerSubject is prefix+ledgerKey(id) in one allocation.
func ledgerSubject(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	var b strings.Builder
	b.Grow(len(prefix) + 2 + 40)
	b.WriteString(prefix)
	b.WriteString("e.")
	var h [40]byte
	hex.Encode(h[:], sum[:20])
	b.Write(h[:])
	return b.String()
}

// Delete removes an id's value.
func (l *Ledger) Delete(ctx context.Context, id string) error {
	if err := l.kv.Delete(ctx, ledgerKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("queue: ledger delete: %w", err)
	}
	return nil
}

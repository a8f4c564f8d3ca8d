// Package dlq reads and redrives mautic-sync's dead letters: the messages
// of the dead-letter stream, each the input message's body byte for byte
// with its headers and the Mautic-Sync-* headers of the event contract.
//
// List and Get read without changing anything. Redrive republishes dead
// letters to their original subjects, with their original headers and the
// Nats-Msg-Id "redrive-<dead-letter sequence>", waits for the publish
// acknowledgement and only then deletes the dead letter. An interrupted
// redrive can therefore be run again: a dead letter that was republished
// but not deleted is republished with the same Nats-Msg-Id, which the
// input stream drops as a duplicate within its duplicate window.
//
// The package knows the contract's header names but not the worker.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/queue/subject"
)

// RedriveIDPrefix starts the Nats-Msg-Id of a redriven message; the dead
// letter's sequence follows. (The dead letters' headers are
// queue/contract's.)
const RedriveIDPrefix = "redrive-"

// ErrNotFound is returned by Get for a sequence the stream does not hold.
var ErrNotFound = errors.New("dlq: no such dead letter")

// DeadLetter is one message of the dead-letter stream, with the contract's
// headers parsed. Fields whose header is missing or malformed are zero.
type DeadLetter struct {
	Seq    uint64    // sequence in the dead-letter stream
	Stored time.Time // when the dead-letter stream stored it
	Header nats.Header
	Data   []byte

	Reason     string
	Error      string
	Status     int
	Subject    string // the input subject the event was published to
	StreamSeq  uint64 // the input's sequence in the input stream
	Deliveries uint64
	FailedAt   time.Time
	// EventID is the body's "id", best effort: "" when the body is not a
	// JSON object with a string id.
	EventID string
}

// Time is when the event failed: Failed-At, or the stored time when that
// header is missing.
func (d DeadLetter) Time() time.Time {
	if d.FailedAt.IsZero() {
		return d.Stored
	}
	return d.FailedAt
}

// OriginalHeader returns the headers the input message had: the dead
// letter's without the Mautic-Sync-* headers, its Nats-Msg-Id (the DLQ's
// dlq-<seq>) and Nats-Expected-* publish preconditions (they held for the
// original publish and would refuse this one).
func (d DeadLetter) OriginalHeader() nats.Header {
	h := nats.Header{}
	for k, v := range d.Header {
		switch {
		case hasPrefixFold(k, contract.HeaderPrefix), strings.EqualFold(k, jetstream.MsgIDHeader), hasPrefixFold(k, "Nats-Expected-"):
			continue
		}
		h[k] = slices.Clone(v)
	}
	return h
}

// RedriveMsg is the message Redrive publishes for the dead letter: the
// body to the original subject, with the original headers and Nats-Msg-Id
// redrive-<Seq>.
func (d DeadLetter) RedriveMsg() *nats.Msg {
	h := d.OriginalHeader()
	h.Set(jetstream.MsgIDHeader, RedriveIDPrefix+strconv.FormatUint(d.Seq, 10))
	return &nats.Msg{Subject: d.Subject, Header: h, Data: d.Data}
}

func capturedBy(filters []string, s string) bool {
	for _, f := range filters {
		if subject.Matches(f, s) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// FromRaw builds a DeadLetter from a message of the dead-letter stream.
func FromRaw(m *jetstream.RawStreamMsg) DeadLetter {
	d := DeadLetter{Seq: m.Sequence, Stored: m.Time, Header: m.Header, Data: m.Data}
	if d.Header == nil {
		d.Header = nats.Header{}
	}
	get := func(k string) string { return strings.TrimSpace(headerGet(d.Header, k)) }
	d.Reason = get(contract.HeaderReason)
	d.Error = get(contract.HeaderError)
	d.Status, _ = strconv.Atoi(get(contract.HeaderStatus))
	d.Subject = get(contract.HeaderSubject)
	d.StreamSeq, _ = strconv.ParseUint(get(contract.HeaderStreamSeq), 10, 64)
	d.Deliveries, _ = strconv.ParseUint(get(contract.HeaderDeliveries), 10, 64)
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, get(contract.HeaderFailedAt))
	var body struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(m.Data, &body) == nil {
		if id, ok := body.ID.(string); ok {
			d.EventID = id
		}
	}
	return d
}

// headerGet is Header.Get, falling back to a case-insensitive match (NATS
// keeps header names as sent).
func headerGet(h nats.Header, key string) string {
	if v := h.Get(key); v != "" {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Filter selects dead letters. Every condition set must hold.
type Filter struct {
	// Reason is Mautic-Sync-Reason (invalid_event, rejected, max_deliveries).
	Reason string
	// Subject is a subject filter on the original subject; * and > are
	// wildcards.
	Subject string
	// Since and Until bound the failure time (inclusive); zero is open.
	Since, Until time.Time
	// Seqs, when not empty, are the dead-letter sequences to consider;
	// those the stream does not hold (any more) are skipped.
	Seqs []uint64
	// Limit stops after that many matches (0: no limit).
	Limit int
}

// Validate checks the filter.
func (f Filter) Validate() error {
	if f.Subject != "" && !subject.Valid(f.Subject, true) {
		return fmt.Errorf("dlq: %q is not a subject filter", f.Subject)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("dlq: until (%s) is before since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	if f.Limit < 0 {
		return fmt.Errorf("dlq: limit must not be negative")
	}
	return nil
}

// Match reports whether the dead letter passes the filter's conditions
// (Limit aside).
func (f Filter) Match(d DeadLetter) bool {
	if f.Reason != "" && d.Reason != f.Reason {
		return false
	}
	if f.Subject != "" && !subject.Matches(f.Subject, d.Subject) {
		return false
	}
	t := d.Time()
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && t.After(f.Until) {
		return false
	}
	if len(f.Seqs) > 0 && !slices.Contains(f.Seqs, d.Seq) {
		return false
	}
	return true
}

// Queue is the dead-letter stream.
type Queue struct {
	js     jetstream.JetStream
	stream string
}

// New returns the Queue of the named dead-letter stream.
func New(js jetstream.JetStream, stream string) *Queue { return &Queue{js: js, stream: stream} }

// Stream is the dead-letter stream's name.
func (q *Queue) Stream() string { return q.stream }

func (q *Queue) handle(ctx context.Context) (jetstream.Stream, error) {
	s, err := q.js.Stream(ctx, q.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("dlq: stream %s does not exist (has mautic-sync, or 'mautic-sync provision', run against this NATS?): %w", q.stream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", q.stream, err)
	}
	return s, nil
}

// Get returns the dead letter with the sequence, or ErrNotFound.
func (q *Queue) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := q.handle(ctx)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: stream %s holds no message %d", ErrNotFound, q.stream, seq)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dlq: get %d from %s: %w", seq, q.stream, err)
	}
	return FromRaw(m), nil
}

// sinceSlack widens the skip-ahead of Filter.Since: messages are skipped
// by their stored time, which follows Failed-At by the publish (and by the
// clock difference between the worker's host and the NATS server).
const sinceSlack = 10 * time.Minute

// Each calls fn for every dead letter that matches, oldest first, up to
// the filter's Limit, and stops at fn's first error. It reads the messages
// stored when it starts; later ones are not visited.
func (q *Queue) Each(ctx context.Context, f Filter, fn func(DeadLetter) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s, err := q.handle(ctx)
	if err != nil {
		return err
	}
	n := 0
	visit := func(m *jetstream.RawStreamMsg) (more bool, err error) {
		d := FromRaw(m)
		if !f.Match(d) {
			return true, nil
		}
		if err := fn(d); err != nil {
			return false, err
		}
		n++
		return f.Limit == 0 || n < f.Limit, nil
	}
	if len(f.Seqs) > 0 {
		seqs := slices.Clone(f.Seqs)
		slices.Sort(seqs)
		for _, seq := range slices.Compact(seqs) {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("dlq: get %d from %s: %w", seq, q.stream, err)
			}
			if more, err := visit(m); err != nil || !more {
				return err
			}
		}
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", q.stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if !f.Since.IsZero() {
		if first, err = q.seekTime(ctx, s, first, last, f.Since.Add(-sinceSlack)); err != nil {
			return err
		}
	}
	for seq := first; seq <= last; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // nothing at or after seq
		}
		if err != nil {
			return fmt.Errorf("dlq: read %s at %d: %w", q.stream, seq, err)
		}
		if m.Sequence > last {
			return nil
		}
		if more, err := visit(m); err != nil || !more {
			return err
		}
		seq = m.Sequence + 1
	}
	return nil
}

// seekTime returns the first sequence in [lo, hi] whose message was stored
// at or after t (hi+1 when none), by bisection over stored times.
func (q *Queue) seekTime(ctx context.Context, s jetstream.Stream, lo, hi uint64, t time.Time) (uint64, error) {
	end := hi + 1
	for lo < end {
		mid := lo + (end-lo)/2
		m, err := s.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && m.Sequence > hi) {
			end = mid // nothing stored from mid on
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("dlq: read %s at %d: %w", q.stream, mid, err)
		}
		if m.Time.Before(t) {
			lo = m.Sequence + 1
		} else {
			end = mid
		}
	}
	return lo, nil
}

// List returns the dead letters that match, oldest first.
func (q *Queue) List(ctx context.Context, f Filter) ([]DeadLetter, error) {
	var out []DeadLetter
	err := q.Each(ctx, f, func(d DeadLetter) error {
		out = append(out, d)
		return nil
	})
	return out, err
}

// Redriven is what became of one dead letter in Redrive.
type Redriven struct {
	Letter DeadLetter
	// Stream and Seq say where the republished message is stored.
	Stream string
	Seq    uint64
	// Duplicate: the stream already held this republication (an earlier
	// redrive was interrupted after publishing and before deleting); it was
	// not stored again.
	Duplicate bool
	// Err is why the dead letter was not redriven; it stays in the stream.
	Err error
	// Skipped: not attempted because an earlier dead letter of the same
	// subject failed, so that a contact's events are not reordered. Err
	// says so.
	Skipped bool
}

// RedriveOptions configures Redrive.
type RedriveOptions struct {
	// ExpectStream, when set, is the stream the republished messages must
	// land in (the input stream): a dead letter whose subject that stream
	// does not capture fails without being published. (This is checked
	// against the stream's subjects rather than with a Nats-Expected-Stream
	// header, which would be stored with the message and carried into its
	// next dead letter.)
	ExpectStream string
	// OnMessage, when set, is called after each dead letter, in order.
	OnMessage func(Redriven)
	// DeleteTimeout bounds the delete that follows a publish; it runs even
	// when ctx has ended, so that an interruption does not leave a
	// republished dead letter behind (default 10s).
	DeleteTimeout time.Duration
}

// RedriveSummary counts what Redrive did.
type RedriveSummary struct {
	Redriven   int // republished (or found republished) and deleted
	Duplicates int // of Redriven: already republished by an interrupted run
	Failed     int // left in the stream after an error
	Skipped    int // left in the stream behind a failure of the same subject
}

// Redrive republishes each dead letter (in the order given) to its
// original subject and deletes it once the publish is acknowledged. It
// returns when all are done, or with ctx's error when ctx ends (the dead
// letter being handled then is finished first if it was published).
// A failure of one dead letter does not stop the others; it is counted and
// reported to OnMessage.
func (q *Queue) Redrive(ctx context.Context, letters []DeadLetter, o RedriveOptions) (RedriveSummary, error) {
	var sum RedriveSummary
	if o.DeleteTimeout <= 0 {
		o.DeleteTimeout = 10 * time.Second
	}
	s, err := q.handle(ctx)
	if err != nil {
		return sum, err
	}
	var captures []string // the expected stream's subjects
	if o.ExpectStream != "" {
		in, err := q.js.Stream(ctx, o.ExpectStream)
		if err != nil {
			return sum, fmt.Errorf("dlq: input stream %s: %w", o.ExpectStream, err)
		}
		captures = in.CachedInfo().Config.Subjects
	}
	failed := map[string]bool{} // original subjects with a failure
	for _, d := range letters {
		if ctx.Err() != nil {
			return sum, context.Cause(ctx)
		}
		r := Redriven{Letter: d}
		switch {
		case d.Subject == "":
			r.Err = fmt.Errorf("dead letter %d has no %s header: its original subject is unknown", d.Seq, contract.HeaderSubject)
		case failed[d.Subject]:
			r.Skipped = true
			r.Err = fmt.Errorf("skipped: an earlier dead letter of subject %s was not redriven, and order per subject is kept", d.Subject)
		case o.ExpectStream != "" && !capturedBy(captures, d.Subject):
			r.Err = fmt.Errorf("stream %s does not capture %s (it captures %v): not republished", o.ExpectStream, d.Subject, captures)
		default:
			r = q.redriveOne(ctx, s, d, o)
			if r.Err != nil && ctx.Err() != nil {
				return sum, context.Cause(ctx) // interrupted: not this message's failure
			}
		}
		switch {
		case r.Skipped:
			sum.Skipped++
		case r.Err != nil:
			sum.Failed++
		default:
			sum.Redriven++
			if r.Duplicate {
				sum.Duplicates++
			}
		}
		if r.Err != nil {
			failed[d.Subject] = true
		}
		if o.OnMessage != nil {
			o.OnMessage(r)
		}
	}
	return sum, nil
}

func (q *Queue) redriveOne(ctx context.Context, s jetstream.Stream, d DeadLetter, o RedriveOptions) Redriven {
	r := Redriven{Letter: d}
	ack, err := q.js.PublishMsg(ctx, d.RedriveMsg())
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			err = fmt.Errorf("%w (does a stream capture %s?)", err, d.Subject)
		}
		r.Err = fmt.Errorf("republish to %s: %w", d.Subject, err)
		return r
	}
	r.Stream, r.Seq, r.Duplicate = ack.Stream, ack.Sequence, ack.Duplicate
	if o.ExpectStream != "" && ack.Stream != o.ExpectStream {
		// The streams changed under us; keep the dead letter.
		r.Err = fmt.Errorf("republished to %s but stored by stream %s (seq %d), not %s: dead letter kept", d.Subject, ack.Stream, ack.Sequence, o.ExpectStream)
		return r
	}
	// Stored: delete the dead letter even if ctx has just ended.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.DeleteTimeout)
	defer cancel()
	if err := s.DeleteMsg(dctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		r.Err = fmt.Errorf("republished to %s (stream %s seq %d) but deleting dead letter %d failed: %w; a re-run within the input stream's duplicate window will not republish it again",
			d.Subject, ack.Stream, ack.Sequence, d.Seq, err)
	}
	return r
}

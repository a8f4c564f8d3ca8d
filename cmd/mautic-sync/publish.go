package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/queue/contract"
	"github.com/mautic-sync/mautic-sync/queue/dlq"
	"github.com/mautic-sync/mautic-sync/queue/subject"
	"github.com/mautic-sync/mautic-sync/worker"
)

const publishUsage = `
Usage: mautic-sync publish [--subject S] (--file F | [--data JSON] [event flags]) [--wait [--timeout D]]

For producers testing their integration: checks one event against the
event contract exactly as the worker does, then publishes it as the contract
asks: to <input prefix>.<key> (mautic.contacts.<key> by default), where <key>
is the first 16 hex characters of the SHA-256 of the lower-cased, trimmed
email, or the mautic_id when there is no email; with Nats-Msg-Id set to the
event id. An invalid event is not published: the problem is printed.

Either give a whole CloudEvent with --file (- for stdin), or build one from
--data (the data object) and the event flags, which override --data:

  mautic-sync publish --email jane@example.com --field firstname=Jane --field score:=5 --tag vip
  mautic-sync publish --type contact.segment.add --mautic-id 42 --segment 3 --wait
  mautic-sync publish --type contact.dnc.add --email jane@example.com --data '{"reason":1}'

--field k=v sets a string; --field k:=JSON sets a JSON value (number, true,
false, null).

--wait waits for the event's outcome (a result or a dead letter) and prints it.

Exit codes: 0 published (and, with --wait, a result), 1 NATS failed, no
outcome before --timeout, or the event was dead-lettered, 2 bad usage,
settings, or an invalid event.`

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type publishFlags struct {
	subject, file, data      string
	typ, email, id, source   string
	mauticID, segment, delta int
	fields, tags             multiFlag
	wait                     bool
	timeout                  time.Duration
	set                      map[string]bool // flags given
}

func cmdPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("publish", publishUsage, stderr)
	var pf publishFlags
	fs.StringVar(&pf.subject, "subject", "", "publish to this subject instead of the contract's <prefix>.<key>")
	fs.StringVar(&pf.file, "file", "", "the event: a file holding one CloudEvent JSON (- for stdin)")
	fs.StringVar(&pf.data, "data", "", "the event's data object as JSON; the flags below add to it")
	fs.StringVar(&pf.typ, "type", worker.TypeUpsert, "event type")
	fs.StringVar(&pf.email, "email", "", "data.email")
	fs.IntVar(&pf.mauticID, "mautic-id", 0, "data.mautic_id")
	fs.Var(&pf.fields, "field", "data.fields entry: alias=string or alias:=JSON (repeatable)")
	fs.Var(&pf.tags, "tag", "data.tags entry; -name removes a tag (repeatable)")
	fs.IntVar(&pf.segment, "segment", 0, "data.segment_id")
	fs.IntVar(&pf.delta, "delta", 0, "data.delta (points)")
	fs.StringVar(&pf.id, "id", "", "event id (default: a random UUID)")
	fs.StringVar(&pf.source, "source", "/mautic-sync/cli", "event source")
	fs.BoolVar(&pf.wait, "wait", false, "wait for the event's outcome and print it")
	fs.DurationVar(&pf.timeout, "timeout", 30*time.Second, "how long --wait waits")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "publish", "unexpected argument %q", fs.Arg(0))
	}
	pf.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { pf.set[f.Name] = true })

	body, built, err := pf.event(stdin)
	if err != nil {
		return usageError(stderr, "publish", "%v", err)
	}
	ev, err := worker.Decode(body)
	if err != nil {
		fmt.Fprintf(stderr, "mautic-sync publish: not published: %v\n", err)
		if built {
			fmt.Fprintf(stderr, "The event built from the flags:\n%s\n", body)
		}
		return exitConfig
	}
	cfg, ok := cliConfig(stderr)
	if !ok {
		return exitConfig
	}
	subj := pf.subject
	if subj == "" {
		if subj, err = contractSubject(cfg.Stream.Subjects, ev); err != nil {
			return usageError(stderr, "publish", "%v", err)
		}
	} else if !subject.Valid(subj, false) {
		return usageError(stderr, "publish", "--subject %q is not a subject (no wildcards)", subj)
	}
	if !capturedByAny(cfg.Stream.Subjects, subj) {
		return usageError(stderr, "publish", "subject %s is not captured by the input stream's subjects %v (STREAM_SUBJECTS)", subj, cfg.Stream.Subjects)
	}

	nc, js, err := cliConnect(ctx, cfg, "publish")
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync publish:", err)
		return exitFailure
	}
	defer nc.Close()
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID))
	if err != nil {
		hint := ""
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			hint = fmt.Sprintf(" (no stream captures it: does stream %s exist? 'mautic-sync provision' creates it)", cfg.Stream.Name)
		}
		fmt.Fprintf(stderr, "mautic-sync publish: publish to %s: %v%s\n", subj, err, hint)
		return exitFailure
	}
	if ack.Duplicate {
		fmt.Fprintf(stdout, "Event %s was already stored (stream %s seq %d): a publish with the same id (Nats-Msg-Id) within the duplicate window is dropped.\n",
			printable(ev.ID, 0), ack.Stream, ack.Sequence)
	} else {
		fmt.Fprintf(stdout, "Published event %s (%s) to %s: stream %s seq %d.\n", printable(ev.ID, 0), ev.Type, subj, ack.Stream, ack.Sequence)
	}
	if ack.Stream != cfg.Stream.Name {
		fmt.Fprintf(stderr, "Warning: stored by stream %s, not the input stream %s (STREAM_NAME): mautic-sync will not see it.\n", ack.Stream, cfg.Stream.Name)
	}
	if !pf.wait {
		return exitOK
	}

	wctx, cancel := context.WithTimeout(ctx, pf.timeout)
	defer cancel()
	out, err := waitOutcome(wctx, js, cfg, ack.Stream, ack.Sequence, subj)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "mautic-sync publish: no outcome for seq %d within %s: is mautic-sync running and consuming stream %s?\n", ack.Sequence, pf.timeout, cfg.Stream.Name)
		} else {
			fmt.Fprintln(stderr, "mautic-sync publish: waiting for the outcome:", err)
		}
		return exitFailure
	}
	if out.deadLetter != nil {
		d := out.deadLetter
		status := ""
		if d.Status != 0 {
			status = fmt.Sprintf(" (Mautic status %d)", d.Status)
		}
		fmt.Fprintf(stdout, "Outcome: dead letter %s%s: %s\n", printable(d.Reason, 0), status, printable(d.Error, 0))
		fmt.Fprintf(stdout, "See it with: mautic-sync dlq show %d\n", d.Seq)
		return exitFailure
	}
	fmt.Fprintf(stdout, "Outcome: %s\n%s\n", out.result.Outcome, bytes.TrimSpace(out.raw))
	return exitOK
}

// event returns the event body: the file's, or one built from the flags
// (built is then true).
func (pf *publishFlags) event(stdin io.Reader) (body []byte, built bool, err error) {
	buildFlags := []string{"data", "type", "email", "mautic-id", "field", "tag", "segment", "delta", "id", "source"}
	if pf.set["file"] {
		for _, f := range buildFlags {
			if pf.set[f] {
				return nil, false, fmt.Errorf("--file gives the whole event; --%s cannot be used with it", f)
			}
		}
		if pf.file == "-" {
			body, err = io.ReadAll(io.LimitReader(stdin, worker.MaxEventSize+1))
		} else {
			body, err = os.ReadFile(pf.file)
		}
		if err != nil {
			return nil, false, fmt.Errorf("--file: %w", err)
		}
		return body, false, nil
	}
	data := map[string]any{}
	if pf.data != "" {
		dec := json.NewDecoder(strings.NewReader(pf.data))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil || data == nil || dec.More() {
			return nil, true, fmt.Errorf("--data must be one JSON object (the event's data), e.g. '{\"email\":\"a@example.com\"}'")
		}
	}
	if pf.set["email"] {
		data["email"] = pf.email
	}
	if pf.set["mautic-id"] {
		data["mautic_id"] = pf.mauticID
	}
	if len(pf.fields) > 0 {
		fields, _ := data["fields"].(map[string]any)
		if fields == nil {
			fields = map[string]any{}
		}
		for _, kv := range pf.fields {
			k, v, err := parseFieldFlag(kv)
			if err != nil {
				return nil, true, err
			}
			fields[k] = v
		}
		data["fields"] = fields
	}
	if len(pf.tags) > 0 {
		tags, _ := data["tags"].([]any)
		for _, t := range pf.tags {
			tags = append(tags, t)
		}
		data["tags"] = tags
	}
	if pf.set["segment"] {
		data["segment_id"] = pf.segment
	}
	if pf.set["delta"] {
		data["delta"] = pf.delta
	}
	id := pf.id
	if !pf.set["id"] {
		id = randomUUID()
	}
	rawData, err := json.Marshal(data)
	if err != nil {
		return nil, true, fmt.Errorf("data: %w", err)
	}
	body, err = json.Marshal(struct {
		SpecVersion string          `json:"specversion"`
		ID          string          `json:"id"`
		Source      string          `json:"source"`
		Type        string          `json:"type"`
		Time        string          `json:"time"`
		Data        json.RawMessage `json:"data"`
	}{"1.0", id, pf.source, pf.typ, time.Now().UTC().Format(time.RFC3339Nano), rawData})
	return body, true, err
}

// parseFieldFlag reads alias=string or alias:=JSON.
func parseFieldFlag(kv string) (string, any, error) {
	if k, v, ok := strings.Cut(kv, ":="); ok && !strings.Contains(k, "=") {
		var raw json.RawMessage
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return "", nil, fmt.Errorf("--field %s: %q is not JSON", kv, v)
		}
		return k, raw, nil
	}
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return "", nil, fmt.Errorf("--field %q: want alias=value or alias:=JSON", kv)
	}
	return k, v, nil
}

// contractKey is the contract's subject key of an event: the first 16 hex
// characters of the SHA-256 of the lower-cased, trimmed email, or the
// mautic_id when there is no email.
func contractKey(ev *worker.Event) string {
	if ev.EmailKey != "" {
		sum := sha256.Sum256([]byte(ev.EmailKey))
		return hex.EncodeToString(sum[:])[:16]
	}
	return strconv.Itoa(ev.MauticID)
}

// contractSubject is <prefix>.<key>, the prefix from the first input subject
// of the form <prefix>.> (mautic.contacts.>).
func contractSubject(inputs []string, ev *worker.Event) (string, error) {
	for _, in := range inputs {
		if p, ok := strings.CutSuffix(in, ".>"); ok && !strings.ContainsAny(p, "*>") {
			return p + "." + contractKey(ev), nil
		}
	}
	return "", fmt.Errorf("no input subject of the form <prefix>.> in STREAM_SUBJECTS %v to put the key under: give --subject", inputs)
}

func capturedByAny(filters []string, s string) bool {
	for _, f := range filters {
		if subject.Matches(f, s) {
			return true
		}
	}
	return false
}

// randomUUID returns a random (version 4) UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// outcome is what waitOutcome found: a result or a dead letter.
type outcome struct {
	result     worker.Result
	raw        []byte
	deadLetter *dlq.DeadLetter
}

// outcomeSlack reaches back before the input's stored time when reading
// the outcome streams, for clock differences between the servers of a
// cluster.
const outcomeSlack = time.Minute

// waitOutcome watches the result and dead-letter streams for the outcome of
// input message seq (its stream_seq / Mautic-Sync-Stream-Seq), from around
// the time the input was stored, until ctx ends.
func waitOutcome(ctx context.Context, js jetstream.JetStream, cfg config.Config, inStream string, seq uint64, subj string) (outcome, error) {
	start := time.Now().Add(-outcomeSlack)
	if s, err := js.Stream(ctx, inStream); err == nil {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			start = m.Time.Add(-outcomeSlack) // an earlier publish of a duplicate
		}
	}
	found := make(chan outcome, 2)
	offer := func(o outcome) {
		select {
		case found <- o:
		default:
		}
	}
	watch := func(stream string, match func(jetstream.Msg)) (jetstream.ConsumeContext, error) {
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		})
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", stream, err)
		}
		return cons.Consume(match)
	}
	rc, err := watch(cfg.Outcomes.ResultStream, func(m jetstream.Msg) {
		var r worker.Result
		if json.Unmarshal(m.Data(), &r) == nil && r.StreamSeq == seq && r.Subject == subj {
			offer(outcome{result: r, raw: m.Data()})
		}
	})
	if err != nil {
		return outcome{}, err
	}
	defer rc.Stop()
	dc, err := watch(cfg.Outcomes.DLQStream, func(m jetstream.Msg) {
		h := m.Headers()
		if h.Get(contract.HeaderStreamSeq) != strconv.FormatUint(seq, 10) || h.Get(contract.HeaderSubject) != subj {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			return
		}
		d := dlq.FromRaw(&jetstream.RawStreamMsg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Header: h, Data: m.Data(), Time: md.Timestamp})
		offer(outcome{deadLetter: &d})
	})
	if err != nil {
		return outcome{}, err
	}
	defer dc.Stop()
	select {
	case o := <-found:
		return o, nil
	case <-ctx.Done():
		return outcome{}, context.Cause(ctx)
	}
}

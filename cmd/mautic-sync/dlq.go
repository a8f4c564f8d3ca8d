package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/queue/dlq"
	"github.com/mautic-sync/mautic-sync/worker"
)

const dlqUsage = `
Usage: mautic-sync dlq <list|show|redrive> [flags]

  list      list dead letters, oldest first
  show SEQ  one dead letter in full
  redrive   republish dead letters to their original subjects and remove them

Run 'mautic-sync dlq <command> -h' for its flags.`

func cmdDLQ(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, strings.TrimSpace(dlqUsage))
		return exitConfig
	}
	switch args[0] {
	case "list":
		return cmdDLQList(ctx, args[1:], stdout, stderr)
	case "show":
		return cmdDLQShow(ctx, args[1:], stdout, stderr)
	case "redrive":
		return cmdDLQRedrive(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, strings.TrimSpace(dlqUsage))
		return exitOK
	default:
		fmt.Fprintf(stderr, "mautic-sync dlq: unknown command %q\n\n%s\n", args[0], strings.TrimSpace(dlqUsage))
		return exitConfig
	}
}

// dlqFilterFlags are the selection flags of list and redrive.
type dlqFilterFlags struct {
	reason, subject, since, until, seqs string
	limit                               int
}

func (f *dlqFilterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.reason, "reason", "", "only this reason: invalid_event, rejected or max_deliveries")
	fs.StringVar(&f.subject, "subject", "", "only dead letters whose original subject matches (wildcards * and > allowed)")
	fs.StringVar(&f.since, "since", "", "only those that failed at or after: RFC 3339 time, date, or duration ago (24h)")
	fs.StringVar(&f.until, "until", "", "only those that failed at or before: RFC 3339 time, date, or duration ago")
	fs.StringVar(&f.seqs, "seq", "", "only these dead-letter sequences, comma-separated")
	fs.IntVar(&f.limit, "limit", 0, "at most this many (oldest first; 0: all)")
}

// filter builds the dlq.Filter, or says what is wrong with the flags.
func (f *dlqFilterFlags) filter(now time.Time) (dlq.Filter, error) {
	out := dlq.Filter{Reason: f.reason, Subject: f.subject, Limit: f.limit}
	switch f.reason {
	case "", worker.ReasonInvalidEvent, worker.ReasonRejected, worker.ReasonMaxDeliveries:
	default:
		return out, fmt.Errorf("--reason %q: want %s, %s or %s", f.reason, worker.ReasonInvalidEvent, worker.ReasonRejected, worker.ReasonMaxDeliveries)
	}
	var err error
	if f.since != "" {
		if out.Since, err = parseWhen(f.since, now); err != nil {
			return out, fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if out.Until, err = parseWhen(f.until, now); err != nil {
			return out, fmt.Errorf("--until: %w", err)
		}
	}
	if f.seqs != "" {
		if out.Seqs, err = parseSeqs(f.seqs); err != nil {
			return out, fmt.Errorf("--seq: %w", err)
		}
	}
	return out, out.Validate()
}

// dlqOpen reads the settings and connects; it returns an exit code when
// that fails.
func dlqOpen(ctx context.Context, name string, stderr io.Writer) (config.Config, *dlq.Queue, func(), int) {
	cfg, ok := cliConfig(stderr)
	if !ok {
		return cfg, nil, nil, exitConfig
	}
	nc, js, err := cliConnect(ctx, cfg, name)
	if err != nil {
		fmt.Fprintf(stderr, "mautic-sync %s: %v\n", name, err)
		return cfg, nil, nil, exitFailure
	}
	return cfg, dlq.New(js, cfg.Outcomes.DLQStream), nc.Close, exitOK
}

const dlqListUsage = `
Usage: mautic-sync dlq list [--reason R] [--subject S] [--since T] [--until T] [--seq N,...] [--limit N] [--json]

Lists dead letters of the dead-letter stream (DLQ_STREAM), oldest first: an
aligned table, or with --json one JSON object per line with every header and
the body ("body" as a string, or "body_base64" when it is not valid UTF-8).`

func cmdDLQList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dlq list", dlqListUsage, stderr)
	var ff dlqFilterFlags
	ff.register(fs)
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "dlq list", "unexpected argument %q", fs.Arg(0))
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return usageError(stderr, "dlq list", "%v", err)
	}
	_, q, closeConn, code := dlqOpen(ctx, "dlq list", stderr)
	if code != exitOK {
		return code
	}
	defer closeConn()

	var letters []dlq.DeadLetter
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	err = q.Each(ctx, f, func(d dlq.DeadLetter) error {
		if *asJSON {
			return enc.Encode(dlqJSONOf(d)) // streamed: no need to hold them all
		}
		letters = append(letters, d)
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync dlq list:", err)
		return exitFailure
	}
	if !*asJSON {
		if len(letters) == 0 {
			fmt.Fprintln(stderr, "No dead letters match.")
			return exitOK
		}
		printDLQTable(stdout, letters)
	}
	return exitOK
}

// printDLQTable prints dead letters as an aligned table.
func printDLQTable(w io.Writer, letters []dlq.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tFAILED AT\tREASON\tSTATUS\tSUBJECT\tEVENT ID\tERROR")
	for _, d := range letters {
		status := "-"
		if d.Status != 0 {
			status = strconv.Itoa(d.Status)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time().UTC().Format(time.RFC3339), orDash(printable(d.Reason, 20)),
			status, orDash(printable(d.Subject, 60)), orDash(printable(d.EventID, 36)), printable(d.Error, 70))
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dlqJSON is a dead letter as printed by --json.
type dlqJSON struct {
	Seq        uint64              `json:"dlq_seq"`
	StoredAt   string              `json:"stored_at"`
	Reason     string              `json:"reason,omitempty"`
	Error      string              `json:"error,omitempty"`
	Status     int                 `json:"status,omitempty"`
	Subject    string              `json:"subject,omitempty"`
	StreamSeq  uint64              `json:"stream_seq,omitempty"`
	Deliveries uint64              `json:"deliveries,omitempty"`
	FailedAt   string              `json:"failed_at,omitempty"`
	EventID    string              `json:"event_id,omitempty"`
	Headers    map[string][]string `json:"headers"`
	Body       *string             `json:"body,omitempty"`
	BodyBase64 []byte              `json:"body_base64,omitempty"`
}

func dlqJSONOf(d dlq.DeadLetter) dlqJSON {
	j := dlqJSON{
		Seq: d.Seq, StoredAt: d.Stored.UTC().Format(time.RFC3339Nano), Reason: d.Reason, Error: d.Error, Status: d.Status,
		Subject: d.Subject, StreamSeq: d.StreamSeq, Deliveries: d.Deliveries, EventID: d.EventID, Headers: d.Header,
	}
	if !d.FailedAt.IsZero() {
		j.FailedAt = d.FailedAt.UTC().Format(time.RFC3339)
	}
	if j.Headers == nil {
		j.Headers = map[string][]string{}
	}
	if utf8.Valid(d.Data) {
		s := string(d.Data)
		j.Body = &s
	} else {
		j.BodyBase64 = d.Data
	}
	return j
}

const dlqShowUsage = `
Usage: mautic-sync dlq show SEQ [--json]

Shows one dead letter in full: its headers and its body.`

func cmdDLQShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dlq show", dlqShowUsage, stderr)
	asJSON := fs.Bool("json", false, "print it as one JSON object (as 'dlq list --json')")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 1 {
		return usageError(stderr, "dlq show", "give one dead-letter sequence (the SEQ column of 'dlq list')")
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return usageError(stderr, "dlq show", "%q is not a stream sequence", pos[0])
	}
	cfg, q, closeConn, code := dlqOpen(ctx, "dlq show", stderr)
	if code != exitOK {
		return code
	}
	defer closeConn()
	d, err := q.Get(ctx, seq)
	if errors.Is(err, dlq.ErrNotFound) {
		fmt.Fprintf(stderr, "mautic-sync dlq show: no dead letter %d in stream %s (already redriven or removed?)\n", seq, cfg.Outcomes.DLQStream)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync dlq show:", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(dlqJSONOf(d))
		return exitOK
	}
	printDeadLetter(stdout, cfg.Outcomes.DLQStream, d)
	return exitOK
}

func printDeadLetter(w io.Writer, stream string, d dlq.DeadLetter) {
	fmt.Fprintf(w, "Dead letter %d of stream %s, stored %s\n\n", d.Seq, stream, d.Stored.UTC().Format(time.RFC3339Nano))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" && v != "0" {
			fmt.Fprintf(tw, "%s\t%s\n", k, printable(v, 0))
		}
	}
	row("Reason:", d.Reason)
	row("Status:", strconv.Itoa(d.Status))
	row("Error:", d.Error)
	row("Subject:", d.Subject)
	row("Stream seq:", strconv.FormatUint(d.StreamSeq, 10))
	row("Deliveries:", strconv.FormatUint(d.Deliveries, 10))
	if !d.FailedAt.IsZero() {
		row("Failed at:", d.FailedAt.UTC().Format(time.RFC3339))
	}
	row("Event id:", d.EventID)
	_ = tw.Flush()

	fmt.Fprintln(w, "\nHeaders:")
	keys := make([]string, 0, len(d.Header))
	for k := range d.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range d.Header[k] {
			fmt.Fprintf(w, "  %s: %s\n", printable(k, 0), printable(v, 0))
		}
	}

	switch {
	case !utf8.Valid(d.Data):
		fmt.Fprintf(w, "\nBody (%d bytes, not valid UTF-8; base64):\n", len(d.Data))
		enc := base64.StdEncoding.EncodeToString(d.Data)
		for len(enc) > 76 {
			fmt.Fprintln(w, enc[:76])
			enc = enc[76:]
		}
		fmt.Fprintln(w, enc)
	default:
		fmt.Fprintf(w, "\nBody (%d bytes):\n", len(d.Data))
		var pretty bytes.Buffer
		if json.Valid(d.Data) && json.Indent(&pretty, d.Data, "", "  ") == nil {
			fmt.Fprintln(w, pretty.String())
			return
		}
		// As stored, with control characters other than newlines and tabs shown as '?'.
		fmt.Fprintln(w, strings.Map(func(r rune) rune {
			if r == '\n' || r == '\t' {
				return r
			}
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return '?'
			}
			return r
		}, string(d.Data)))
	}
}

const dlqRedriveUsage = `
Usage: mautic-sync dlq redrive [--reason R] [--subject S] [--since T] [--until T] [--seq N,...] [--limit N] [--dry-run] [--yes]

Republishes the selected dead letters (all when no filter is given) to their
original subjects (Mautic-Sync-Subject) with their original headers and
Nats-Msg-Id "redrive-<dead-letter seq>", waits for each publish to be stored
and only then removes the dead letter. Interrupting it (Ctrl-C) is safe:
run the same command again, within the input stream's duplicate window
(STREAM_DUPLICATE_WINDOW), and nothing is republished twice.

Asks for confirmation when stdin is a terminal; otherwise --yes is required.

Exit codes: 0 all redriven (or nothing selected, or --dry-run), 1 some were
not (failed, interrupted, or not confirmed), 2 bad usage or settings.`

func cmdDLQRedrive(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("dlq redrive", dlqRedriveUsage, stderr)
	var ff dlqFilterFlags
	ff.register(fs)
	dryRun := fs.Bool("dry-run", false, "list what would be redriven; change nothing")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "dlq redrive", "unexpected argument %q", fs.Arg(0))
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return usageError(stderr, "dlq redrive", "%v", err)
	}
	interactive := isTerminal(stdin)
	if !*dryRun && !*yes && !interactive {
		fmt.Fprintln(stderr, "mautic-sync dlq redrive: refusing to redrive without confirmation: stdin is not a terminal. Pass --yes, or --dry-run to see what would be redriven.")
		return exitConfig
	}
	cfg, q, closeConn, code := dlqOpen(ctx, "dlq redrive", stderr)
	if code != exitOK {
		return code
	}
	defer closeConn()

	letters, err := q.List(ctx, f)
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync dlq redrive:", err)
		return exitFailure
	}
	if missing := missingSeqs(f.Seqs, letters); len(missing) > 0 && f.Reason == "" && f.Subject == "" && f.Since.IsZero() && f.Until.IsZero() {
		fmt.Fprintf(stderr, "Not in stream %s (already redriven?): %s\n", cfg.Outcomes.DLQStream, joinSeqs(missing))
	}
	if len(letters) == 0 {
		fmt.Fprintln(stderr, "No dead letters match; nothing to redrive.")
		return exitOK
	}
	if *dryRun {
		printDLQTable(stdout, letters)
		fmt.Fprintf(stdout, "Dry run: %s would be republished to their original subjects; nothing was changed.\n", countReasons(letters))
		return exitOK
	}
	fmt.Fprintf(stderr, "%s selected in stream %s, to be republished to their original subjects (stream %s).\n",
		countReasons(letters), cfg.Outcomes.DLQStream, cfg.Stream.Name)
	if n := countReason(letters, worker.ReasonInvalidEvent); n > 0 {
		fmt.Fprintf(stderr, "Note: %d of them failed as invalid_event; their bodies are unchanged, so they will be dead-lettered again.\n", n)
	}
	if !*yes {
		fmt.Fprintf(stderr, "Redrive %d dead letter(s)? [y/N] ", len(letters))
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(stderr, "Not confirmed; nothing was changed.")
			return exitFailure
		}
	}

	var bar *progressBar
	if isTerminal(stderr) && len(letters) > 20 {
		bar = newProgressBar(stderr, len(letters), "redriven")
	}
	sum, err := q.Redrive(ctx, letters, dlq.RedriveOptions{
		ExpectStream: cfg.Stream.Name,
		OnMessage: func(r dlq.Redriven) {
			line := redriveLine(r)
			switch {
			case bar == nil:
				fmt.Fprintln(stdout, line)
			case r.Err != nil:
				bar.Println(line)
				bar.Add(1, true)
			default:
				bar.Add(1, false)
			}
		},
	})
	if bar != nil {
		bar.Done()
	}
	done := fmt.Sprintf("Redriven %d of %d", sum.Redriven, len(letters))
	if sum.Duplicates > 0 {
		done += fmt.Sprintf(" (%d had been republished by an interrupted run and were not stored again)", sum.Duplicates)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintf(stdout, "%s; interrupted. The rest stay in the dead-letter stream: run the same command again to continue.\n", done)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stdout, "%s.\n", done)
		fmt.Fprintln(stderr, "mautic-sync dlq redrive:", err)
		return exitFailure
	case sum.Failed > 0 || sum.Skipped > 0:
		fmt.Fprintf(stdout, "%s; %d failed and %d skipped behind a failure of the same subject stay in the dead-letter stream.\n", done, sum.Failed, sum.Skipped)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s.\n", done)
	return exitOK
}

func redriveLine(r dlq.Redriven) string {
	d := r.Letter
	switch {
	case r.Skipped:
		return fmt.Sprintf("skipped   dlq %d (%s): %v", d.Seq, printable(d.Subject, 0), r.Err)
	case r.Err != nil:
		return fmt.Sprintf("FAILED    dlq %d (%s): %v", d.Seq, printable(d.Subject, 0), r.Err)
	case r.Duplicate:
		return fmt.Sprintf("redriven  dlq %d -> %s (already stored by an earlier run: %s seq %d)", d.Seq, printable(d.Subject, 0), r.Stream, r.Seq)
	default:
		return fmt.Sprintf("redriven  dlq %d -> %s (%s seq %d)", d.Seq, printable(d.Subject, 0), r.Stream, r.Seq)
	}
}

// countReasons says "3 dead letter(s) (rejected: 2, max_deliveries: 1)".
func countReasons(letters []dlq.DeadLetter) string {
	n := map[string]int{}
	for _, d := range letters {
		n[orDash(d.Reason)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", printable(k, 30), n[k])
	}
	return fmt.Sprintf("%d dead letter(s) (%s)", len(letters), strings.Join(parts, ", "))
}

func countReason(letters []dlq.DeadLetter, reason string) int {
	n := 0
	for _, d := range letters {
		if d.Reason == reason {
			n++
		}
	}
	return n
}

func missingSeqs(want []uint64, got []dlq.DeadLetter) []uint64 {
	var out []uint64
	for _, s := range want {
		if !slices.ContainsFunc(got, func(d dlq.DeadLetter) bool { return d.Seq == s }) {
			out = append(out, s)
		}
	}
	return out
}

func joinSeqs(s []uint64) string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, ", ")
}

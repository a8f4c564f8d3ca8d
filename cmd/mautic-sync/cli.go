package main

// Shared plumbing of the operator commands (provision, dlq, publish): the
// configuration they need, the NATS connection, flags and terminals.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/queue"
)

// cliSettingPrefixes are the variables that operator commands use: NATS
// and the JetStream topology, not Mautic, batching or the HTTP server.
var cliSettingPrefixes = []string{"NATS_", "STREAM_", "CONSUMER_", "RESULT_", "DLQ_"}

// cliConfig reads the configuration as run does and reports (then returns
// false) only the problems of the settings operator commands use.
func cliConfig(stderr io.Writer) (config.Config, bool) {
	cfg, err := config.Parse()
	// Validate too when parsing failed: an unparseable variable that does
	// not matter here must not hide one that does.
	if err = cliProblems(errors.Join(err, cfg.Validate())); err != nil {
		printConfigErrors(stderr, err)
		return cfg, false
	}
	return cfg, true
}

// cliProblems keeps the problems that name a NATS or JetStream variable.
// config reports one problem per joined error, each starting with the
// variable's name.
func cliProblems(err error) error {
	if err == nil {
		return nil
	}
	var keep []error
	for _, e := range leafErrors(err) {
		for _, p := range cliSettingPrefixes {
			if strings.HasPrefix(e.Error(), p) {
				keep = append(keep, e)
				break
			}
		}
	}
	return errors.Join(keep...)
}

// leafErrors flattens joined errors.
func leafErrors(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, leafErrors(e)...)
	}
	return out
}

// cliConnect connects to NATS as the service does.
func cliConnect(ctx context.Context, cfg config.Config, name string) (*queue.Conn, jetstream.JetStream, error) {
	nc, err := queue.Connect(ctx, queue.ConnOptions{
		URL: cfg.NATS.URL, Name: "mautic-sync " + name, CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile,
		User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token,
		CAFile: cfg.NATS.CAFile, CertFile: cfg.NATS.CertFile, KeyFile: cfg.NATS.KeyFile,
		ConnectTimeout: cfg.NATS.ConnectTimeout, ReconnectWait: cfg.NATS.ReconnectWait,
		MaxReconnects: cfg.NATS.MaxReconnects,
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// newFlagSet returns a flag set whose usage is the text, then the flags.
func newFlagSet(name, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, strings.TrimSpace(text))
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseInterleaved parses flags that may come before or after the
// positional arguments (`dlq show 12 --json`) and returns the latter.
// After "--" everything is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// usageError prints a usage problem and returns the usage exit code.
func usageError(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "mautic-sync %s: %s\nRun 'mautic-sync %s -h' for usage.\n", cmd, fmt.Sprintf(format, args...), cmd)
	return exitConfig
}

// isTerminal reports whether f is a terminal: a character device other
// than the null device (which is what cron, systemd and `</dev/null` give).
// It needs no dependency; other character devices are not met in practice.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

// parseWhen reads a time: RFC 3339, a date (2006-01-02, UTC), or a
// duration meaning that long before now ("2h", "30m").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-25T10:00:00Z), a date (2026-11-25) nor a duration ago (90m, 24h)", s)
}

// parseSeqs reads "3,5,9".
func parseSeqs(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a stream sequence", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no sequence given")
	}
	return out, nil
}

// printable makes a value safe for one line of a terminal: control
// characters become '?', and it is cut to max runes (0: no cut).
func printable(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

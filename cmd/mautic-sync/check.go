package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mautic-sync/mautic-sync/config"
	"github.com/mautic-sync/mautic-sync/mautic"
	"github.com/mautic-sync/mautic-sync/queue"
	"github.com/mautic-sync/mautic-sync/worker"
)

// cmdCheck verifies a deployment's Mautic side before it goes live.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each check")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: mautic-sync check [--timeout D] [EVENT_FILE ...]

Checks, with the settings of 'run', that Mautic is reachable, accepts the
credentials (refresh-token mode: the current token from JetStream, as 'run'
keeps it), has its API enabled, reports its version and rate-limit
headroom, and that every field alias used by the sample events in the given
files (one JSON event per file, or one per line) is a Mautic contact field:
Mautic silently ignores unknown aliases. Exits 1 when a check fails.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := config.Parse()
	if err == nil {
		err = checkMauticSettings(cfg)
	}
	if err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}
	// Refresh-token mode: Mautic rotates the refresh token on every use,
	// so the check takes it from, and gives the new one back to, the
	// store in JetStream the service uses (compare-and-set), never
	// leaving the running replicas with a spent token.
	var store mautic.TokenStore
	if cfg.Mautic.AuthMode() == "refresh_token" {
		nc, js, err := cliConnect(ctx, cfg, "check")
		if err != nil {
			fmt.Fprintln(stderr, "mautic-sync check: refresh-token mode keeps the current token in JetStream, which is not reachable:", err)
			return exitFailure
		}
		defer nc.Close()
		if store, err = queue.OpenTokenStore(ctx, js, cfg.Mautic.TokenBucket, cfg.Mautic.ClientID, cfg.CreateStreams); err != nil {
			fmt.Fprintln(stderr, "mautic-sync check:", err)
			return exitFailure
		}
	}
	mc, err := newMauticClient(cfg.Mautic, store, nil, nil)
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync check:", err)
		return exitConfig
	}
	r := &report{w: stdout}
	fmt.Fprintf(stdout, "Checking Mautic at %s (auth: %s)\n", mautic.RedactedURL(cfg.Mautic.URL), cfg.Mautic.AuthMode())

	cctx, cancel := context.WithTimeout(ctx, *timeout)
	fields, resp, err := mc.ContactFields(cctx)
	cancel()
	if err != nil {
		r.fail("reach Mautic and authenticate", explain(err))
		return r.exit()
	}
	r.ok("Mautic reachable, credentials accepted, API enabled", "")
	if v := mc.Version(); v != "" {
		r.ok("Mautic version", v)
	} else {
		r.warn("Mautic version", "no Mautic-Version header (a proxy may strip it)")
	}
	rate := resp.Rate
	switch {
	case rate.Limit == 0:
		r.ok("rate limit", "Mautic reports none (its limiter is off)")
	case rate.Remaining == 0:
		r.fail("rate limit", fmt.Sprintf("used up: 0 of %d calls left until %s", rate.Limit, rate.Reset.UTC().Format(time.RFC3339)))
	default:
		r.ok("rate limit", fmt.Sprintf("%d of %d calls left in the window, which resets at %s", rate.Remaining, rate.Limit, rate.Reset.UTC().Format(time.RFC3339)))
		if cfg.Mautic.RateLimit == 0 {
			r.warn("rate budget", fmt.Sprintf("MAUTIC_RATE_LIMIT is not set: set it to %d (or below) so that 429s stay rare", rate.Limit))
		} else if cfg.Mautic.RateLimit > rate.Limit {
			r.warn("rate budget", fmt.Sprintf("MAUTIC_RATE_LIMIT=%d is above Mautic's limit of %d", cfg.Mautic.RateLimit, rate.Limit))
		}
	}
	known := map[string]bool{}
	for _, f := range fields {
		known[f.Alias] = true
	}
	r.ok("contact fields", fmt.Sprintf("%d", len(fields)))
	for _, path := range fs.Args() {
		checkSamples(r, path, known)
	}
	return r.exit()
}

// checkMauticSettings runs the configuration checks that concern Mautic.
func checkMauticSettings(cfg config.Config) error {
	var errs []error
	for _, e := range strings.Split(errString(cfg.Validate()), "\n") {
		if strings.HasPrefix(e, "MAUTIC_") || strings.Contains(e, "Mautic credentials") || strings.Contains(e, "basic auth") {
			errs = append(errs, errors.New(e))
		}
	}
	return errors.Join(errs...)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkSamples checks the field aliases of the events in one file.
func checkSamples(r *report, path string, known map[string]bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		r.fail("sample "+path, err.Error())
		return
	}
	bodies := [][]byte{bytes.TrimSpace(data)}
	if ev, err := worker.Decode(bodies[0]); err != nil || ev == nil {
		bodies = nil // one event per line
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), worker.MaxEventSize+1)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				bodies = append(bodies, slices.Clone(line))
			}
		}
	}
	var unknown, zeros []string
	for i, b := range bodies {
		ev, err := worker.Decode(b)
		if err != nil {
			r.fail(fmt.Sprintf("sample %s event %d", path, i+1), err.Error())
			continue
		}
		for alias, v := range ev.Fields {
			switch {
			case !known[alias] && !slices.Contains(unknown, alias):
				unknown = append(unknown, alias)
			case known[alias] && isZero(v) && !slices.Contains(zeros, alias):
				zeros = append(zeros, alias)
			}
		}
	}
	slices.Sort(unknown)
	slices.Sort(zeros)
	if len(unknown) > 0 {
		r.fail("sample "+path, "field aliases Mautic does not have (it would ignore them): "+strings.Join(unknown, ", "))
	} else {
		r.ok("sample "+path, fmt.Sprintf("%d event(s), every field alias exists", len(bodies)))
	}
	if len(zeros) > 0 {
		r.warn("sample "+path, "numeric 0 values that Mautic drops on create and update: "+strings.Join(zeros, ", "))
	}
}

func isZero(v any) bool {
	s := fmt.Sprint(v)
	return s == "0" || s == "0.0" || s == "-0"
}

// explain adds what to do to a Mautic error.
func explain(err error) string {
	var ae *mautic.AuthError
	var api *mautic.APIError
	switch {
	case errors.As(err, &ae):
		return err.Error()
	case errors.As(err, &api) && api.RoutingError():
		return err.Error() + "; MAUTIC_URL must be the address of Mautic's front page (the API lives under /api)"
	case errors.As(err, &api) && api.NotJSON:
		return err.Error() + "; this is not Mautic's API answering (a proxy, a maintenance page, or a wrong MAUTIC_URL)"
	}
	return err.Error()
}

// report prints check lines and remembers failures.
type report struct {
	w      io.Writer
	failed int
}

func (r *report) ok(what, detail string)   { r.line("ok  ", what, detail) }
func (r *report) warn(what, detail string) { r.line("warn", what, detail) }
func (r *report) fail(what, detail string) {
	r.failed++
	r.line("FAIL", what, detail)
}

func (r *report) line(tag, what, detail string) {
	if detail != "" {
		what += ": " + detail
	}
	fmt.Fprintf(r.w, "  [%s] %s\n", tag, what)
}

func (r *report) exit() int {
	if r.failed > 0 {
		fmt.Fprintf(r.w, "%d check(s) failed\n", r.failed)
		return exitFailure
	}
	fmt.Fprintln(r.w, "all checks passed")
	return exitOK
}

// Command mautic-sync applies contact-change events from NATS JetStream to
// Mautic and publishes one outcome per event.
//
//	mautic-sync [run]     the service (needs NATS_URL and MAUTIC_URL)
//	mautic-sync dev       the service on an embedded NATS server and Mautic fake, fed with samples
//	mautic-sync env       every setting with its default
//	mautic-sync version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/mautic-sync/mautic-sync/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the service failed while running
	exitConfig  = 2 // bad usage or settings: nothing was started
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process, so that tests can embed it: ctx ends
// the service (main ends it on SIGINT and SIGTERM), output goes to the
// writers given, and the exit code is returned.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stdout, stderr)
	case "dev":
		return cmdDev(ctx, args, stdout, stderr)
	case "env":
		return cmdEnv(stdout)
	case "check":
		return cmdCheck(ctx, args, stdout, stderr)
	case "provision":
		return cmdProvision(ctx, args, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, args, os.Stdin, stdout, stderr)
	case "publish":
		return cmdPublish(ctx, args, os.Stdin, stdout, stderr)
	case "bench":
		return cmdBench(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "mautic-sync", version())
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mautic-sync: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitConfig
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: mautic-sync <command> [flags]

Commands:
  run       consume contact events and apply them to Mautic (the default);
            needs NATS_URL and MAUTIC_URL with credentials, see 'mautic-sync env'
  dev       run the real service on an embedded NATS server and a built-in
            Mautic fake, publish sample events and print every outcome
  env       list every setting (environment variable) with its default
  check     verify Mautic before going live: reachable, credentials, API on,
            version, rate-limit headroom, field aliases of sample events
  provision create or update the streams and the consumer from the settings
            (--dry-run shows the difference and changes nothing)
  dlq       list, show and redrive dead letters: dlq list|show|redrive
  publish   check an event against the contract and publish it (for producers)
  bench     measure the real service on an embedded NATS server and the Mautic fake
  version   print the version

Run 'mautic-sync <command> -h' for a command's flags.
`)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: mautic-sync run\n\nConfigured by environment variables only; 'mautic-sync env' lists them.")
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, err := config.Load()
	if err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync:", err)
		return exitConfig
	}
	defer func() { _ = log.Sync() }()
	if err := serve(ctx, cfg, log, nil); err != nil {
		log.Error("mautic-sync stopped", zap.Error(err))
		return exitFailure
	}
	return exitOK
}

func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitConfig
}

// printConfigErrors prints every configuration problem, one a line.
func printConfigErrors(w io.Writer, err error) {
	lines := strings.Split(err.Error(), "\n")
	fmt.Fprintf(w, "mautic-sync: the configuration has %d problem(s); nothing was started:\n", len(lines))
	for _, l := range lines {
		fmt.Fprintln(w, "  -", l)
	}
	fmt.Fprintln(w, "Run 'mautic-sync env' for every setting and its default.")
}

func cmdEnv(w io.Writer) int {
	for _, s := range config.Settings() {
		def := s.Default
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(w, "%-28s %-22s %s\n", s.Key, def, s.Description)
	}
	return exitOK
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mautic-sync/mautic-sync/queue/provision"
)

const provisionUsage = `
Usage: mautic-sync provision [--dry-run]

Creates or updates the input, result and dead-letter streams and the durable
consumer so that they match the settings (STREAM_*, CONSUMER_*, RESULT_*,
DLQ_*; see 'mautic-sync env'), and shows what differs. Only the fields
mautic-sync manages are changed: subjects, duplicate window and storage of
streams; ack policy, ack wait, max ack pending, max deliver and filter
subjects of the consumer. Running it again changes nothing.

With PARTITIONS set it partitions the input stream (a subject transform),
creates one consumer per partition, narrows the unpartitioned consumer (if it
exists) to the events stored before, and creates the members bucket of
elastic mode; see docs/scaling.md. JETSTREAM_REPLICAS sets the replicas of
what it creates.

Exit codes: 0 done (or nothing to do), 1 NATS refused or is unreachable,
2 bad usage or settings.`

func cmdProvision(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("provision", provisionUsage, stderr)
	dryRun := fs.Bool("dry-run", false, "show what would change; change nothing")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "provision", "unexpected argument %q", fs.Arg(0))
	}
	cfg, ok := cliConfig(stderr)
	if !ok {
		return exitConfig
	}
	nc, js, err := cliConnect(ctx, cfg, "provision")
	if err != nil {
		fmt.Fprintln(stderr, "mautic-sync provision:", err)
		return exitFailure
	}
	defer nc.Close()

	plan, err := provision.RunWith(ctx, js, topology(cfg), provisionOptions(cfg), *dryRun)
	if len(plan.Items) > 0 {
		printPlan(stdout, plan)
	}
	switch {
	case errors.Is(err, provision.ErrBlocked):
		fmt.Fprintln(stderr, "mautic-sync provision:", err)
		fmt.Fprintln(stderr, "Delete and re-create the stream or consumer by hand (this loses its messages or position), or change the setting back.")
		return exitFailure
	case err != nil:
		fmt.Fprintln(stderr, "mautic-sync provision:", err)
		return exitFailure
	}
	counts := map[provision.Action]int{}
	for _, it := range plan.Items {
		counts[it.Action]++
	}
	switch {
	case !plan.Changed():
		fmt.Fprintln(stdout, "Nothing to change.")
	case *dryRun:
		fmt.Fprintf(stdout, "Dry run: %d to create, %d to update, %d unchanged; nothing was changed.\n",
			counts[provision.Create], counts[provision.Update], counts[provision.Unchanged])
		if b := plan.Blocked(); len(b) > 0 {
			fmt.Fprintf(stdout, "Applying would be refused: %d change(s) cannot be made in place.\n", len(b))
		}
	default:
		fmt.Fprintf(stdout, "Done: %d created, %d updated, %d unchanged.\n",
			counts[provision.Create], counts[provision.Update], counts[provision.Unchanged])
	}
	return exitOK
}

// printPlan shows each item with its action and, under it, the managed
// fields it sets: "old → new" for an update.
func printPlan(w io.Writer, p provision.Plan) {
	for _, it := range p.Items {
		fmt.Fprintf(w, "%s: %s\n", it, it.Action)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range it.Changes {
			switch {
			case it.Action == provision.Create:
				fmt.Fprintf(tw, "    %s\t%s\n", c.Field, c.New)
			case c.Immutable:
				fmt.Fprintf(tw, "    %s\t%s → %s\t(cannot be changed in place)\n", c.Field, c.Old, c.New)
			default:
				fmt.Fprintf(tw, "    %s\t%s → %s\n", c.Field, c.Old, c.New)
			}
		}
		_ = tw.Flush()
	}
}

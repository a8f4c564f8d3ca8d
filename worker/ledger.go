package worker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Ledger remembers which event ids took effect, so that an event delivered
// again (after a crash, or published twice without Nats-Msg-Id) is not
// applied twice. The queue package implements it with a JetStream
// key-value bucket whose TTL bounds how long an id is remembered.
type Ledger interface {
	// Lookup returns the recorded entry of each id that has one.
	Lookup(ctx context.Context, ids []string) (map[string]LedgerEntry, error)
	// Intend records that id is about to be applied by the message seq,
	// unless an entry exists; then it returns that entry and false.
	Intend(ctx context.Context, id string, e LedgerEntry) (LedgerEntry, bool, error)
	// Record stores entries (applied marks), overwriting.
	Record(ctx context.Context, entries map[string]LedgerEntry) error
	// Forget removes an id's entry (an intent whose call Mautic refused).
	Forget(ctx context.Context, id string) error
}

// Ledger states.
const (
	LedgerIntent     = "intent"      // a points call is about to be made
	LedgerApplied    = "applied"     // the event took effect
	LedgerDeadLetter = "dead_letter" // the message's dead letter is stored (keyed by deadLetterKey)
)

// deadLetterKey is the ledger id under which a message's stored dead
// letter is recorded, so that a redelivery (its Term was lost) is not
// processed again.
func deadLetterKey(seq uint64) string { return "\x00dead-letter:" + strconv.FormatUint(seq, 10) }

// copyKey is the ledger id under which a message carrying a copy of an
// applied event (settled as a duplicate) is recorded once its outcome is
// stored, so that recovery after a crash knows not to wait for it.
func copyKey(seq uint64) string { return "\x00copy-settled:" + strconv.FormatUint(seq, 10) }

// LedgerEntry is what the ledger knows of one event id.
type LedgerEntry struct {
	State    string // LedgerIntent or LedgerApplied
	Seq      uint64 // stream sequence of the message that applied it
	MauticID int
}

// String encodes an entry as "<state>:<seq>:<mautic id>".
func (e LedgerEntry) String() string {
	return e.State + ":" + strconv.FormatUint(e.Seq, 10) + ":" + strconv.Itoa(e.MauticID)
}

// ParseLedgerEntry decodes LedgerEntry.String.
func ParseLedgerEntry(s string) (LedgerEntry, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || (parts[0] != LedgerIntent && parts[0] != LedgerApplied && parts[0] != LedgerDeadLetter) {
		return LedgerEntry{}, fmt.Errorf("worker: bad ledger entry %q", s)
	}
	seq, err1 := strconv.ParseUint(parts[1], 10, 64)
	id, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return LedgerEntry{}, fmt.Errorf("worker: bad ledger entry %q", s)
	}
	return LedgerEntry{State: parts[0], Seq: seq, MauticID: id}, nil
}

// noLedger remembers nothing: every delivery is applied.
type noLedger struct{}

func (noLedger) Lookup(context.Context, []string) (map[string]LedgerEntry, error) { return nil, nil }
func (noLedger) Intend(context.Context, string, LedgerEntry) (LedgerEntry, bool, error) {
	return LedgerEntry{}, true, nil
}
func (noLedger) Record(context.Context, map[string]LedgerEntry) error { return nil }
func (noLedger) Forget(context.Context, string) error                 { return nil }

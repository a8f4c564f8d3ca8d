package worker

import (
	"context"
	"errors"
	"time"

	"github.com/mautic-sync/mautic-sync/mautic"
)

// Message is one delivery of an input message, with JetStream's ack verbs.
// The queue package implements it; tests may too.
type Message interface {
	Data() []byte
	// Header returns the message headers (nil when none). The worker
	// does not modify the map.
	Header() map[string][]string
	Subject() string
	// StreamSeq is the message's sequence in the input stream.
	StreamSeq() uint64
	// NumDelivered counts deliveries of the message, this one included.
	NumDelivered() uint64
	Ack(ctx context.Context) error
	Term(ctx context.Context) error
	Nak(ctx context.Context, delay time.Duration) error
	InProgress(ctx context.Context) error
}

// Source delivers input messages.
type Source interface {
	// Fetch pulls up to max messages, waiting at most wait for them, and
	// calls deliver for each as it arrives. It returns when the pull is
	// complete.
	Fetch(ctx context.Context, max int, wait time.Duration, deliver func(Message)) error
}

// Lease is implemented by a Source whose right to the messages it
// delivers can lapse: partitioned consumption, where another replica takes
// a partition over once this one has not confirmed its ownership for the
// takeover time (it died, or is cut off from NATS). The worker starts no
// Mautic call while the source is fenced (its ownership is unconfirmed for
// long enough that a takeover may be near), and hands back, unapplied, the
// messages of partitions it no longer owns, so that two replicas never
// apply one contact's events at once.
type Lease interface {
	// Fenced reports whether calls must wait now, and why.
	Fenced(now time.Time) (why string, fenced bool)
	// Owns reports whether the message's partition is still this
	// replica's.
	Owns(m Message) bool
}

// Outbound is an outcome message to publish.
type Outbound struct {
	Subject string
	// MsgID is the Nats-Msg-Id that makes a repeated publish a no-op.
	MsgID  string
	Header map[string][]string
	Data   []byte
}

// ErrTooLarge is returned (wrapped) by a Publisher for a message over the
// server's size limit: publishing it again cannot succeed.
var ErrTooLarge = errors.New("message over the server's size limit")

// Publisher stores outcome messages durably.
type Publisher interface {
	// Publish stores every message and returns one error per message
	// (nil when stored, including when a duplicate of a stored message).
	Publish(ctx context.Context, msgs []Outbound) []error
}

// Mautic is the part of the Mautic client the worker uses.
type Mautic interface {
	BatchUpsert(ctx context.Context, items []mautic.Contact) ([]mautic.ItemResult, *mautic.Response, error)
	BatchEdit(ctx context.Context, items []mautic.Contact) ([]mautic.ItemResult, *mautic.Response, error)
	BatchDelete(ctx context.Context, ids []int) ([]int, *mautic.Response, error)
	FindByEmail(ctx context.Context, emails []string) (map[string][]int, *mautic.Response, error)
	AddToSegment(ctx context.Context, segmentID int, contactIDs []int) (map[int]bool, *mautic.Response, error)
	RemoveFromSegment(ctx context.Context, segmentID, contactID int) (*mautic.Response, error)
	AdjustPoints(ctx context.Context, contactID, delta int, eventName string) (*mautic.Response, error)
	// ContactFields lists Mautic's contact fields, to report aliases it
	// would ignore.
	ContactFields(ctx context.Context) ([]mautic.Field, *mautic.Response, error)
	// Version is Mautic's version as last reported, "" before any answer.
	Version() string
}

// Recovery lists the input messages that an earlier worker may have left
// unacknowledged (it died holding them). Their redeliveries can arrive
// after newer messages of the same contacts; the worker keeps those waiting
// until the older ones are back or can no longer come.
type Recovery interface {
	Unacked(ctx context.Context, limit int) ([]StoredMessage, error)
}

// StoredMessage is an input message read from the stream.
type StoredMessage struct {
	Seq     uint64
	Subject string
	Data    []byte
}

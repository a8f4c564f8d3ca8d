package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mautic-sync/mautic-sync/queue/subject"
)

// Topology names the streams and the consumer mautic-sync uses.
type Topology struct {
	Stream     string   // input stream, e.g. MAUTIC_CONTACTS
	Subjects   []string // its subjects, e.g. mautic.contacts.>
	Duplicates time.Duration

	Consumer      string // durable pull consumer
	AckWait       time.Duration
	MaxAckPending int

	ResultStream, ResultSubject string
	DLQStream, DLQSubject       string
}

// Ensure checks that the streams and the consumer exist and returns the
// consumer. With create set, missing ones are created (existing ones are
// never changed). Without it, a missing one is an error that says what to
// provision.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology, create bool) (jetstream.Consumer, error) {
	streams := []jetstream.StreamConfig{
		{Name: t.Stream, Subjects: t.Subjects, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: "contact-change events for mautic-sync"},
		{Name: t.ResultStream, Subjects: []string{t.ResultSubject}, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: "mautic-sync results, one per applied event"},
		{Name: t.DLQStream, Subjects: []string{t.DLQSubject}, Duplicates: t.Duplicates, Storage: jetstream.FileStorage,
			Description: "mautic-sync dead letters"},
	}
	for _, cfg := range streams {
		if err := ensureStream(ctx, js, cfg, create); err != nil {
			return nil, err
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       t.Consumer,
		Description:   "mautic-sync worker",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxAckPending: t.MaxAckPending,
		// The worker counts deliveries itself and dead-letters with the
		// payload; the server must not drop messages silently first.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := js.Consumer(ctx, t.Stream, t.Consumer)
	switch {
	case err == nil:
		return cons, nil
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("queue: look up consumer %s on stream %s: %w", t.Consumer, t.Stream, err)
	case !create:
		return nil, fmt.Errorf("queue: consumer %s on stream %s does not exist and CREATE_STREAMS is false: create it (durable pull, explicit ack) or set CREATE_STREAMS=true", t.Consumer, t.Stream)
	}
	cons, err = js.CreateOrUpdateConsumer(ctx, t.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("queue: create consumer %s on stream %s: %w", t.Consumer, t.Stream, err)
	}
	return cons, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, create bool) error {
	s, err := js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		info := s.CachedInfo()
		for _, want := range cfg.Subjects {
			if info != nil && !slices.Contains(info.Config.Subjects, want) && !coveredBy(info.Config.Subjects, want) {
				return fmt.Errorf("queue: stream %s exists but does not capture %q (it captures %v): fix the stream or the setting", cfg.Name, want, info.Config.Subjects)
			}
		}
		return nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("queue: look up stream %s: %w (is JetStream enabled on the server?)", cfg.Name, err)
	case !create:
		return fmt.Errorf("queue: stream %s does not exist and CREATE_STREAMS is false: create it with subjects %v or set CREATE_STREAMS=true", cfg.Name, cfg.Subjects)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("queue: create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// coveredBy reports whether a subject is captured by one of the filters.
func coveredBy(filters []string, s string) bool {
	for _, f := range filters {
		if subject.Matches(f, s) {
			return true
		}
	}
	return false
}

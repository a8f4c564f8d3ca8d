package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Source pulls input messages from a durable pull consumer.
type Source struct {
	cons jetstream.Consumer
}

// NewSource returns a Source for the consumer.
func NewSource(cons jetstream.Consumer) *Source { return &Source{cons: cons} }

// Fetch makes one pull request for up to max messages,
// each handed to deliver as it arrives.
func (s *Source) Fetch(ctx context.Context, max int, wait time.Duration, deliver func(*Message)) error {
	if max <= 0 {
		return nil
	}
	batch, err := s.cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return fmt.Errorf("queue: fetch: %w", err)
	}
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			// Not a JetStream message: nothing to ack it with.
			continue
		}
		deliver(&Message{msg: m, seq: md.Sequence.Stream, delivered: md.NumDelivered})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
		return fmt.Errorf("queue: fetch: %w", err)
	}
	return nil
}

// Message is one delivery of an input message.
type Message struct {
	msg       jetstream.Msg
	seq       uint64
	delivered uint64
}

// Data returns the body.
func (m *Message) Data() []byte { return m.msg.Data() }

// Header returns the headers.
func (m *Message) Header() map[string][]string { return m.msg.Headers() }

// Subject returns the subject it was published to.
func (m *Message) Subject() string { return m.msg.Subject() }

// StreamSeq returns its sequence in the input stream.
func (m *Message) StreamSeq() uint64 { return m.seq }

// NumDelivered counts its deliveries, this one included.
func (m *Message) NumDelivered() uint64 { return m.delivered }

// Ack acknowledges it.
func (m *Message) Ack(context.Context) error { return m.msg.Ack() }

// Term tells the server never to redeliver it.
func (m *Message) Term(context.Context) error { return m.msg.Term() }

// Nak asks for redelivery after delay (at once when 0).
func (m *Message) Nak(_ context.Context, delay time.Duration) error {
	if delay > 0 {
		return m.msg.NakWithDelay(delay)
	}
	return m.msg.Nak()
}

// InProgress resets its AckWait.
func (m *Message) InProgress(context.Context) error { return m.msg.InProgress() }

// StoredMsg is a message read from the stream, not delivered.
type StoredMsg struct {
	Seq     uint64
	Subject string
	Data    []byte
}

// Unacked reads the input messages that may still await acknowledgement
// from an earlier consumer instance: those after the consumer's ack floor
// up to the last one it delivered (at most limit of them). Some of them may
// have been acknowledged individually; the caller cannot tell which until
// they are redelivered or AckWait has passed.
func Unacked(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, limit int) ([]StoredMsg, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: consumer info: %w", err)
	}
	if info.NumAckPending == 0 {
		return nil, nil
	}
	first, last := info.AckFloor.Stream+1, info.Delivered.Stream
	if last >= first && last-first >= uint64(limit) {
		last = first + uint64(limit) - 1
	}
	var out []StoredMsg
	for seq := first; seq <= last; seq++ {
		m, ok, err := ReadMsg(ctx, js, info.Stream, seq, "")
		if err != nil {
			return out, fmt.Errorf("queue: read message %d: %w", seq, err)
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, nil
}

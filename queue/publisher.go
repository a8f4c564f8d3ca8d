package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Outbound is a message to store.
type Outbound struct {
	Subject string
	MsgID   string // Nats-Msg-Id: a repeated publish within the duplicate window is a no-op
	Header  map[string][]string
	Data    []byte
}

// Publisher stores outcome messages in JetStream.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a Publisher.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores every message and returns one error per message. The messages are sent at once and
// each is confirmed by the stream (a publish acknowledgement); a message
// whose Nats-Msg-Id the stream already holds counts as stored.
func (p *Publisher) Publish(ctx context.Context, msgs []Outbound) []error {
	errs := make([]error, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, o := range msgs {
		m := &nats.Msg{Subject: o.Subject, Data: o.Data, Header: nats.Header(o.Header)}
		f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(o.MsgID))
		if err != nil {
			errs[i] = fmt.Errorf("queue: publish to %s: %w", o.Subject, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("queue: publish to %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("queue: publish to %s: %w", msgs[i].Subject, context.Cause(ctx))
		}
	}
	return errs
}

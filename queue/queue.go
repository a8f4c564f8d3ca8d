// Package queue is everything that touches NATS: the connection with its
// reconnect policy, the streams and consumer mautic-sync needs, fetching
// input messages with their ack verbs, and publishing outcomes with
// de-duplication ids. It implements the worker's Source, Message and
// Publisher.
package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ConnOptions says how to connect to NATS.
type ConnOptions struct {
	URL            string
	Name           string // client name shown in the server's monitoring
	CredsFile      string
	NKeyFile       string
	User, Password string
	Token          string
	CAFile         string
	CertFile       string
	KeyFile        string
	ConnectTimeout time.Duration
	ReconnectWait  time.Duration
	// MaxReconnects is the number of reconnection attempts; -1 is forever.
	MaxReconnects int
}

// Conn is a NATS connection that remembers whether it has given up.
type Conn struct {
	*nats.Conn
	closed atomic.Bool
}

// Healthy reports whether the connection is usable or still reconnecting
// within its budget: false only once it is closed for good.
func (c *Conn) Healthy() bool { return !c.closed.Load() && !c.Conn.IsClosed() }

// Connect dials NATS. It keeps reconnecting (buffering publishes) after a
// connection loss, up to MaxReconnects attempts, logging each change.
func Connect(ctx context.Context, o ConnOptions, log *zap.Logger) (*Conn, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nats")
	c := &Conn{}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.ConnectTimeout),
		nats.ReconnectWait(o.ReconnectWait),
		nats.MaxReconnects(o.MaxReconnects),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the connection is being closed
				log.Warn("disconnected from NATS; reconnecting", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			c.closed.Store(true)
			log.Info("NATS connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS error", zap.String("subscription", subj), zap.Error(err))
		}),
	}
	if o.Name == "" {
		opts[0] = nats.Name("mautic-sync")
	}
	if o.ConnectTimeout <= 0 {
		opts[1] = nats.Timeout(10 * time.Second)
	}
	if o.ReconnectWait <= 0 {
		opts[2] = nats.ReconnectWait(2 * time.Second)
	}
	auth, err := authOptions(o)
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(o.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("queue: connect to NATS at %s: %w (check NATS_URL and the NATS credentials)", redactURL(o.URL), r.err)
		}
		c.Conn = r.nc
		return c, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

func authOptions(o ConnOptions) ([]nats.Option, error) {
	var opts []nats.Option
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("queue: NATS_NKEY_FILE: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, errors.New("queue: a client certificate needs both NATS_CERT_FILE and NATS_KEY_FILE")
		}
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	if o.CAFile != "" || o.CertFile != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// redactURL hides passwords and tokens in a (comma-separated) NATS URL list.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		scheme := ""
		if j := strings.Index(p, "://"); j >= 0 {
			scheme, p = p[:j+3], p[j+3:]
		}
		if at := strings.LastIndexByte(p, '@'); at >= 0 {
			p = "redacted@" + p[at+1:]
		}
		parts[i] = scheme + p
	}
	return strings.Join(parts, ",")
}

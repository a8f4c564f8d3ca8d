package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading and writing the latest value of a replicated bucket.
//
// nats.go's KeyValue reads with direct gets, and every replica of a stream
// with allow_direct answers those, a lagging follower with what it has
// applied so far: a key written (and acknowledged by the leader) a moment
// ago may read as missing, a deleted one as still there. JetStream offers
// no read-after-write for direct gets (nats-server issue 6557); the
// maintainers' advice is to read from the stream leader, which answers the
// stream's message get API ($JS.API.STREAM.MSG.GET) alone. The token
// store, the rate store and the partition claims read through leaderReads
// when their bucket has more than one replica; the ledger checks its batch
// direct gets against the leader's last sequence (lastSeq) and reads
// through leaderReads when a batch was behind. So a replica never takes a decision on a stale read: an event applied by
// another replica applied again, a rotated refresh token used, a rate
// count undercounted, a released claim seen as held. (A deposed leader
// that has not noticed yet may still answer once; that window is the
// leader election's.)

// leaderReads reads the last message of subjects of one stream from the
// stream's leader.
type leaderReads struct {
	nc      *nats.Conn
	subject string // the stream's message get API subject
	info    string // its stream info API subject
}

// newLeaderReads reads stream through js's connection and API prefix.
func newLeaderReads(js jetstream.JetStream, stream string) leaderReads {
	pre := apiPrefix(js)
	return leaderReads{nc: js.Conn(), subject: pre + "STREAM.MSG.GET." + stream, info: pre + "STREAM.INFO." + stream}
}

// request sends an API request, bounded by defaultAPITimeout when ctx has
// no deadline.
func (r leaderReads) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultAPITimeout)
		defer cancel()
	}
	return r.nc.RequestWithContext(ctx, subject, data)
}

// lastSeq asks the stream's leader for the stream's last sequence: every
// write acknowledged before the call is at or below it. It fails while
// the stream has no leader (a replica may then answer for itself).
func (r leaderReads) lastSeq(ctx context.Context) (uint64, error) {
	resp, err := r.request(ctx, r.info, nil)
	if err != nil {
		return 0, fmt.Errorf("stream info from the leader: %w", err)
	}
	var a struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		Cluster *struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(resp.Data, &a); err != nil {
		return 0, fmt.Errorf("stream info from the leader: bad answer: %w", err)
	}
	switch {
	case a.Error != nil:
		return 0, fmt.Errorf("stream info from the leader: %s", a.Error.Description)
	case a.Cluster == nil || a.Cluster.Leader == "":
		return 0, errors.New("stream info from the leader: the stream has no leader")
	}
	return a.State.LastSeq, nil
}

// apiPrefix is js's JetStream API prefix, as nats.go's KeyValue uses it.
func apiPrefix(js jetstream.JetStream) string {
	opts := js.Options()
	switch {
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	case opts.APIPrefix != "":
		if !strings.HasSuffix(opts.APIPrefix, ".") {
			return opts.APIPrefix + "."
		}
		return opts.APIPrefix
	}
	return jetstream.DefaultAPIPrefix
}

// lastMsg is a message as the leader holds it, a subject's last in a
// bucket.
type lastMsg struct {
	found   bool   // a message is stored (maybe a delete marker)
	deleted bool   // it marks the key deleted or purged
	seq     uint64 // its sequence: the key's revision
	subject string
	value   []byte
}

// live reports whether the key has a value.
func (m lastMsg) live() bool { return m.found && !m.deleted }

type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Subject string `json:"subject"`
		Seq     uint64 `json:"seq"`
		Header  []byte `json:"hdrs"`
		Data    []byte `json:"data"`
	} `json:"message"`
}

// msgGetRequest is a message get API request: the message at Seq, the
// first at or after Seq on NextBySubject, or the last on LastBySubject.
type msgGetRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	LastBySubject string `json:"last_by_subj,omitempty"`
	NextBySubject string `json:"next_by_subj,omitempty"`
}

// last reads subject's last message from the leader.
func (r leaderReads) last(ctx context.Context, subject string) (lastMsg, error) {
	return r.get(ctx, msgGetRequest{LastBySubject: subject})
}

// get asks the leader for one message.
func (r leaderReads) get(ctx context.Context, q msgGetRequest) (lastMsg, error) {
	req, err := json.Marshal(q)
	if err != nil {
		return lastMsg{}, err
	}
	resp, err := r.request(ctx, r.subject, req)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return lastMsg{}, fmt.Errorf("read from the stream leader: %w (JetStream not enabled, or the stream has no leader)", err)
		}
		return lastMsg{}, fmt.Errorf("read from the stream leader: %w", err)
	}
	return decodeMsgGet(resp.Data)
}

// decodeMsgGet reads the message get API's answer.
func decodeMsgGet(data []byte) (lastMsg, error) {
	var a msgGetResponse
	if err := json.Unmarshal(data, &a); err != nil {
		return lastMsg{}, fmt.Errorf("read from the stream leader: bad answer: %w", err)
	}
	if a.Error != nil {
		if a.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return lastMsg{}, nil
		}
		return lastMsg{}, fmt.Errorf("read from the stream leader: %s (code %d, error code %d)", a.Error.Description, a.Error.Code, a.Error.ErrCode)
	}
	if a.Message == nil {
		return lastMsg{}, errors.New("read from the stream leader: answer without a message")
	}
	return lastMsg{found: true, deleted: deletedEntry(parseHeader(a.Message.Header)), seq: a.Message.Seq, subject: a.Message.Subject, value: a.Message.Data}, nil
}

// defaultAPITimeout bounds a leader read whose context has no deadline.
const defaultAPITimeout = 5 * time.Second

// parseHeader reads a stored message's header block ("NATS/1.0\r\n" and
// "Key: Value" lines), as the message get API returns it.
func parseHeader(b []byte) nats.Header {
	if len(b) == 0 {
		return nil
	}
	h := nats.Header{}
	lines := bytes.Split(b, []byte("\r\n"))
	for _, line := range lines[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 {
			continue
		}
		key := string(bytes.TrimSpace(k))
		h[key] = append(h[key], string(bytes.TrimSpace(v)))
	}
	return h
}

// ReadMsg reads from stream's leader the message at seq or, with filter,
// the first at or after seq whose subject matches filter; ok is false when
// there is none. Unlike nats.go's Stream.GetMsg on a stream with
// allow_direct, a lagging follower never answers.
func ReadMsg(ctx context.Context, js jetstream.JetStream, stream string, seq uint64, filter string) (m StoredMsg, ok bool, err error) {
	got, err := newLeaderReads(js, stream).get(ctx, msgGetRequest{Seq: seq, NextBySubject: filter})
	if err != nil || !got.found {
		return StoredMsg{}, false, err
	}
	return StoredMsg{Seq: got.seq, Subject: got.subject, Data: got.value}, true, nil
}

// kvLeaderReads returns the leader reads of kv's stream when it has more
// than one replica; nil when one server holds it (its direct gets are as
// fresh).
func kvLeaderReads(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (*leaderReads, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kv.Bucket(), err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo().Config.Replicas <= 1 {
		return nil, nil
	}
	r := newLeaderReads(js, bs.StreamInfo().Config.Name)
	return &r, nil
}

// getKey reads key's latest value: from the stream leader (as subject)
// when reads is set, else with kv.Get. found is false when the key has no
// live value; rev is then its delete marker's sequence if the leader was
// asked, else 0.
func getKey(ctx context.Context, kv jetstream.KeyValue, reads *leaderReads, subject, key string) (value []byte, rev uint64, found bool, err error) {
	if reads != nil {
		m, err := reads.last(ctx, subject)
		return m.value, m.seq, m.live(), err
	}
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound): // also deleted
		return nil, 0, false, nil
	case err != nil:
		return nil, 0, false, err
	}
	return e.Value(), e.Revision(), true, nil
}

// kvSubject is the subject of key in bucket's stream.
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// casConflict reports whether err is a compare-and-set conflict of a put
// with an expected last revision.
func casConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// busySubject reports whether err is a replicated stream's refusal of a
// compare-and-set write because an earlier write to the same subject is
// still being applied ("wrong last sequence" without a sequence, error
// code 10164): not a conflict, the write should be tried again. nats.go
// reports it as ErrKeyExists or ErrKeyRevisionMismatch like a real one.
func busySubject(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// Retrying a write refused as busySubject: a few milliseconds apart, for
// at most about a second (the earlier write's replication).
const (
	busyRetryFirst = 2 * time.Millisecond
	busyRetryMax   = 50 * time.Millisecond
	busyRetries    = 40
)

// casWrite runs a compare-and-set write (put, update or delete with an
// expected revision) again while the stream refuses it as busySubject.
func casWrite[T any](ctx context.Context, write func() (T, error)) (T, error) {
	wait := busyRetryFirst
	for i := 0; ; i++ {
		v, err := write()
		if err == nil || !busySubject(err) || i == busyRetries {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, busyRetryMax)
	}
}

// update is kv.Update, tried again while the subject is busy.
func update(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	return casWrite(ctx, func() (uint64, error) { return kv.Update(ctx, key, value, rev) })
}

// createKey stores value under key unless the key has a live value, as
// KeyValue.Create does, but it reads a conflicting key from the leader
// (reads, when set) to tell a live value from a deleted one: nats.go's
// Create reads it with a direct get, and a lagging follower may show a
// deleted key as still there. It returns the new revision and created, or
// the live entry and not created.
func createKey(ctx context.Context, kv jetstream.KeyValue, reads *leaderReads, subject, key string, value []byte) (rev uint64, existing lastMsg, created bool, err error) {
	var last uint64 // the revision the key is expected at: 0, none
	for range maxCASAttempts {
		write := func() (uint64, error) { return kv.Update(ctx, key, value, last) }
		if reads == nil { // one server: Create's own read is fresh, and it creates over a delete marker
			write = func() (uint64, error) { return kv.Create(ctx, key, value) }
		}
		rev, err := casWrite(ctx, write)
		if err == nil {
			return rev, lastMsg{}, true, nil
		}
		if !casConflict(err) {
			return 0, lastMsg{}, false, err
		}
		cur, seq, found, err := getKey(ctx, kv, reads, subject, key)
		if err != nil {
			return 0, lastMsg{}, false, fmt.Errorf("read after a conflict: %w", err)
		}
		if found {
			return 0, lastMsg{found: true, seq: seq, value: cur}, false, nil
		}
		last = seq // deleted: create over its marker; gone: as new
	}
	return 0, lastMsg{}, false, fmt.Errorf("key %s kept changing under concurrent updates", key)
}

package worker

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mautic-sync/mautic-sync/queue/contract"
)

// Outcomes of a result message.
const (
	OutcomeApplied   = contract.OutcomeApplied
	OutcomeUnchanged = contract.OutcomeUnchanged
	OutcomeDuplicate = contract.OutcomeDuplicate
)

// Dead-letter reasons (header Mautic-Sync-Reason).
const (
	ReasonInvalidEvent  = contract.ReasonInvalidEvent
	ReasonRejected      = contract.ReasonRejected
	ReasonMaxDeliveries = contract.ReasonMaxDeliveries
)

// headerMsgID is JetStream's de-duplication header. (The dead letters'
// own headers are queue/contract's.)
const headerMsgID = "Nats-Msg-Id"

// maxErrorHeader is the contract's bound on Mautic-Sync-Error.
const maxErrorHeader = 1024

// Result is the body of a result message.
type Result struct {
	EventID     string `json:"event_id"`
	EventType   string `json:"event_type"`
	Outcome     string `json:"outcome"`
	MauticID    int    `json:"mautic_id,omitempty"`
	Status      int    `json:"status,omitempty"`
	Attempts    uint64 `json:"attempts"`
	ProcessedAt string `json:"processed_at"`
	// Beyond the contract's minimum:
	Subject   string `json:"subject"`
	StreamSeq uint64 `json:"stream_seq"`
	// IgnoredFields lists fields Mautic is known to drop from this event
	// (numeric 0 on POST/PATCH), so that a producer can see it.
	IgnoredFields []IgnoredField `json:"ignored_fields,omitempty"`
	// Uncertain is set on a duplicate whose earlier attempt may or may
	// not have taken effect (see the delivery guarantees); Note says why.
	Uncertain bool   `json:"uncertain,omitempty"`
	Note      string `json:"note,omitempty"`
	// MauticVersion is Mautic's version as it last reported it.
	MauticVersion string `json:"mautic_version,omitempty"`
}

// IgnoredField is a field of an upsert that Mautic did not store.
type IgnoredField struct {
	Field string `json:"field"`
	// Kind is numeric_zero or unknown_field.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// verdict is what became of one event.
type verdict struct {
	outcome   string // applied, unchanged, duplicate; "" for a dead letter
	reason    string // dead-letter reason
	err       string // dead-letter error line
	status    int    // Mautic's HTTP status for the item, 0 when no call
	mauticID  int
	ignored   []IgnoredField
	uncertain bool
	note      string
	// stored: the outcome (a dead letter) is already stored; settle only
	// terminates the input.
	stored bool
}

func applied(status, id int) verdict {
	return verdict{outcome: OutcomeApplied, status: status, mauticID: id}
}
func unchanged(status, id int) verdict {
	return verdict{outcome: OutcomeUnchanged, status: status, mauticID: id}
}
func rejected(status int, msg string) verdict {
	return verdict{reason: ReasonRejected, status: status, err: msg}
}

func (v verdict) deadLetter() bool { return v.outcome == "" }

// resultMessage builds the result message of an event.
func (c outboxConfig) resultMessage(m Message, ev *Event, v verdict, now time.Time) Outbound {
	r := Result{
		EventID:       ev.ID,
		EventType:     ev.Type,
		Outcome:       v.outcome,
		MauticID:      v.mauticID,
		Status:        v.status,
		Attempts:      m.NumDelivered(),
		ProcessedAt:   now.UTC().Format(time.RFC3339Nano),
		Subject:       m.Subject(),
		StreamSeq:     m.StreamSeq(),
		IgnoredFields: v.ignored,
		Uncertain:     v.uncertain,
		Note:          v.note,
		MauticVersion: c.version(),
	}
	body, _ := json.Marshal(r) // plain strings and numbers: cannot fail
	return Outbound{
		Subject: c.resultSubject,
		MsgID:   "result-" + strconv.FormatUint(m.StreamSeq(), 10),
		Header:  map[string][]string{"Content-Type": {"application/json"}},
		Data:    body,
	}
}

// deadLetter builds the dead letter of a message: its body byte for byte,
// its headers kept, the contract's headers added.
func (c outboxConfig) deadLetter(m Message, v verdict, now time.Time) Outbound {
	h := make(map[string][]string, len(m.Header())+8)
	for k, vals := range m.Header() {
		if publishDirective(k) {
			continue
		}
		h[k] = append([]string(nil), vals...)
	}
	seq := strconv.FormatUint(m.StreamSeq(), 10)
	h[contract.HeaderReason] = []string{v.reason}
	h[contract.HeaderError] = []string{oneLine(v.err, maxErrorHeader)}
	if v.status != 0 {
		h[contract.HeaderStatus] = []string{strconv.Itoa(v.status)}
	} else {
		delete(h, contract.HeaderStatus)
	}
	h[contract.HeaderSubject] = []string{m.Subject()}
	h[contract.HeaderStreamSeq] = []string{seq}
	h[contract.HeaderDeliveries] = []string{strconv.FormatUint(m.NumDelivered(), 10)}
	h[contract.HeaderFailedAt] = []string{now.UTC().Format(time.RFC3339)}
	delete(h, headerMsgID) // replaced by the publisher's dlq-<seq>
	return Outbound{Subject: c.dlqSubject, MsgID: "dlq-" + seq, Header: h, Data: m.Data()}
}

// publishDirective reports headers that instruct JetStream at publish
// time (expected stream or sequence, roll-ups, per-message TTL): copied into
// a dead letter they would make its publish fail or misbehave.
func publishDirective(h string) bool {
	h = strings.ToLower(h)
	return strings.HasPrefix(h, "nats-expected-") || h == "nats-rollup" || h == "nats-ttl"
}

// outboxConfig names where outcomes go.
type outboxConfig struct {
	resultSubject, dlqSubject string
	version                   func() string // Mautic's version, "" when unknown
}

// oneLine folds s onto one line of valid UTF-8 of at most n bytes.
func oneLine(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n - 3
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

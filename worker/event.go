package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Event types of contract version 1.
const (
	TypeUpsert        = "contact.upsert"
	TypeDelete        = "contact.delete"
	TypeSegmentAdd    = "contact.segment.add"
	TypeSegmentRemove = "contact.segment.remove"
	TypeDNCAdd        = "contact.dnc.add"
	TypeDNCRemove     = "contact.dnc.remove"
	TypePointsAdd     = "contact.points.add"
)

// MaxEventSize is the contract's limit on one event body.
const MaxEventSize = 1 << 20

// Event is a decoded, valid contact-change event.
type Event struct {
	ID     string
	Source string
	Type   string
	Time   time.Time

	// Email is the address as given, trimmed; EmailKey is it lower-cased.
	Email    string
	EmailKey string
	// MauticID is the contact's Mautic id, 0 when not given. When set it is
	// the identity.
	MauticID int

	// contact.upsert
	Fields             map[string]any // values: string, json.Number, bool or nil
	Tags               []string
	OverwriteWithBlank bool

	// contact.segment.*
	SegmentID int

	// contact.dnc.*
	Channel  string
	Reason   int
	Comments string

	// contact.points.add
	Delta int

	// TraceParent and TraceState are the CloudEvents distributed-tracing
	// extension attributes (W3C trace context), "" when absent.
	TraceParent, TraceState string
}

// Identity is the event's contact identity: "id:<n>" when mautic_id is
// given, else "email:<lower-cased email>".
func (e *Event) Identity() string {
	if e.MauticID > 0 {
		return fmt.Sprintf("id:%d", e.MauticID)
	}
	return "email:" + e.EmailKey
}

// InvalidEventError says how a message fails the event contract.
type InvalidEventError struct {
	// Field is the offending attribute, as a path ("data.segment_id"), or
	// "" for the body as a whole.
	Field   string
	Problem string
}

func (e *InvalidEventError) Error() string {
	if e.Field == "" {
		return "invalid event: " + e.Problem
	}
	return "invalid event: " + e.Field + ": " + e.Problem
}

func invalid(field, format string, args ...any) *InvalidEventError {
	return &InvalidEventError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// reservedFieldKeys are payload keys of Mautic's that are not field aliases.
var reservedFieldKeys = map[string]bool{"id": true, "tags": true, "doNotContact": true, "overwriteWithBlank": true}

// Decode parses and validates one message body against the event contract.
// A violation returns an *InvalidEventError naming the attribute.
func Decode(body []byte) (*Event, error) {
	if len(body) > MaxEventSize {
		return nil, invalid("", "body is %d bytes, over the 1 MiB limit", len(body))
	}
	if !utf8.Valid(body) {
		return nil, invalid("", "body is not valid UTF-8")
	}
	var attrs map[string]json.RawMessage
	if err := strictUnmarshal(body, &attrs); err != nil {
		return nil, invalid("", "body is not a JSON object: %s", jsonProblem(err))
	}
	if attrs == nil {
		return nil, invalid("", "body is not a JSON object: null")
	}
	e := &Event{}
	var spec string
	if err := requireString(attrs, "specversion", &spec); err != nil {
		return nil, err
	}
	if spec != "1.0" {
		return nil, invalid("specversion", "must be \"1.0\", got %q", spec)
	}
	if err := requireString(attrs, "id", &e.ID); err != nil {
		return nil, err
	}
	if n := utf8.RuneCountInString(e.ID); n < 1 || n > 200 {
		return nil, invalid("id", "must be 1-200 characters, got %d", n)
	}
	if err := requireString(attrs, "source", &e.Source); err != nil {
		return nil, err
	}
	if _, err := url.Parse(e.Source); e.Source == "" || err != nil {
		return nil, invalid("source", "must be a non-empty URI-reference")
	}
	if err := requireString(attrs, "type", &e.Type); err != nil {
		return nil, err
	}
	var ts string
	if err := requireString(attrs, "time", &ts); err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, invalid("time", "must be an RFC 3339 time, got %q", ts)
	}
	e.Time = t
	if raw, ok := attrs["datacontenttype"]; ok {
		var ct string
		if json.Unmarshal(raw, &ct) != nil || !strings.HasPrefix(ct, "application/json") {
			return nil, invalid("datacontenttype", "must be \"application/json\" when present")
		}
	}
	// The distributed-tracing extension: kept when well-formed strings,
	// ignored otherwise (extensions never make an event invalid).
	_ = json.Unmarshal(attrs["traceparent"], &e.TraceParent)
	_ = json.Unmarshal(attrs["tracestate"], &e.TraceState)
	rawData, ok := attrs["data"]
	if !ok {
		return nil, invalid("data", "is required")
	}
	var data map[string]json.RawMessage
	if err := strictUnmarshal(rawData, &data); err != nil || data == nil {
		return nil, invalid("data", "must be a JSON object")
	}
	if err := e.decodeIdentity(data); err != nil {
		return nil, err
	}
	if err := e.decodeData(data); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Event) decodeIdentity(data map[string]json.RawMessage) error {
	if raw, ok := data["email"]; ok && !isNull(raw) {
		var email string
		if json.Unmarshal(raw, &email) != nil {
			return invalid("data.email", "must be a string")
		}
		email = strings.TrimSpace(email)
		if !plausibleEmail(email) {
			return invalid("data.email", "%q is not an email address", truncate(email, 100))
		}
		e.Email, e.EmailKey = email, strings.ToLower(email)
	}
	if raw, ok := data["mautic_id"]; ok && !isNull(raw) {
		id, err := positiveInt(raw)
		if err != nil {
			return invalid("data.mautic_id", "%s", err)
		}
		e.MauticID = id
	}
	if e.Email == "" && e.MauticID == 0 {
		return invalid("data", "names no contact: give email or mautic_id")
	}
	return nil
}

func (e *Event) decodeData(data map[string]json.RawMessage) error {
	switch e.Type {
	case TypeUpsert:
		return e.decodeUpsert(data)
	case TypeDelete:
		return nil
	case TypeSegmentAdd, TypeSegmentRemove:
		raw, ok := data["segment_id"]
		if !ok {
			return invalid("data.segment_id", "is required")
		}
		id, err := positiveInt(raw)
		if err != nil {
			return invalid("data.segment_id", "%s", err)
		}
		e.SegmentID = id
		return nil
	case TypeDNCAdd, TypeDNCRemove:
		return e.decodeDNC(data)
	case TypePointsAdd:
		raw, ok := data["delta"]
		if !ok {
			return invalid("data.delta", "is required")
		}
		n, err := wholeNumber(raw)
		if err != nil {
			return invalid("data.delta", "%s", err)
		}
		if n == 0 {
			return invalid("data.delta", "must not be zero")
		}
		e.Delta = n
		return nil
	default:
		return invalid("type", "unknown event type %q (want contact.upsert, contact.delete, contact.segment.add, contact.segment.remove, contact.dnc.add, contact.dnc.remove or contact.points.add)", truncate(e.Type, 100))
	}
}

func (e *Event) decodeUpsert(data map[string]json.RawMessage) error {
	if raw, ok := data["fields"]; ok && !isNull(raw) {
		// One decoder for the whole object (not one per value: this runs
		// for every upsert).
		var fields map[string]any
		if strictUnmarshal(raw, &fields) != nil || fields == nil {
			return invalid("data.fields", "must be an object of field alias to value")
		}
		for k, v := range fields {
			if k == "" || reservedFieldKeys[k] {
				return invalid("data.fields", "%q is not a field alias", k)
			}
			switch v.(type) {
			case string, json.Number, bool, nil:
			case map[string]any:
				return invalid("data.fields."+k, "must be a string, number, boolean or null, got an object")
			default:
				return invalid("data.fields."+k, "must be a string, number, boolean or null, got an array")
			}
		}
		e.Fields = fields
		if s, ok := e.Fields["email"].(string); ok && e.MauticID == 0 && e.Email != "" &&
			!strings.EqualFold(strings.TrimSpace(s), e.Email) {
			return invalid("data.fields.email", "differs from data.email; to change a contact's email, name it by mautic_id")
		}
	}
	if raw, ok := data["tags"]; ok && !isNull(raw) {
		var tags []string
		if json.Unmarshal(raw, &tags) != nil {
			return invalid("data.tags", "must be an array of strings")
		}
		for _, t := range tags {
			if strings.TrimSpace(strings.TrimPrefix(t, "-")) == "" {
				return invalid("data.tags", "a tag must not be empty")
			}
			if strings.Contains(t, ",") {
				return invalid("data.tags", "tag %q contains a comma", truncate(t, 100))
			}
		}
		e.Tags = tags
	}
	if raw, ok := data["overwrite_with_blank"]; ok && !isNull(raw) {
		if json.Unmarshal(raw, &e.OverwriteWithBlank) != nil {
			return invalid("data.overwrite_with_blank", "must be a boolean")
		}
	}
	return nil
}

func (e *Event) decodeDNC(data map[string]json.RawMessage) error {
	e.Channel, e.Reason = "email", 3
	if raw, ok := data["channel"]; ok && !isNull(raw) {
		if json.Unmarshal(raw, &e.Channel) != nil || strings.TrimSpace(e.Channel) == "" {
			return invalid("data.channel", "must be a non-empty string")
		}
		if strings.ContainsAny(e.Channel, "/?#") {
			return invalid("data.channel", "%q is not a channel name", truncate(e.Channel, 100))
		}
	}
	if raw, ok := data["reason"]; ok && !isNull(raw) {
		n, err := wholeNumber(raw)
		if err != nil || n < 1 || n > 3 {
			return invalid("data.reason", "must be 1 (unsubscribed), 2 (bounced) or 3 (manual)")
		}
		e.Reason = n
	}
	if raw, ok := data["comments"]; ok && !isNull(raw) {
		if json.Unmarshal(raw, &e.Comments) != nil {
			return invalid("data.comments", "must be a string")
		}
	}
	return nil
}

func requireString(attrs map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := attrs[name]
	if !ok {
		return invalid(name, "is required")
	}
	if json.Unmarshal(raw, dst) != nil {
		return invalid(name, "must be a string")
	}
	return nil
}

// strictUnmarshal decodes one JSON value and refuses trailing data.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func jsonProblem(err error) string {
	s := err.Error()
	if s == "unexpected EOF" || s == "EOF" {
		return "truncated JSON"
	}
	return strings.TrimPrefix(s, "json: ")
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// wholeNumber reads a JSON integer that fits an int.
func wholeNumber(raw json.RawMessage) (int, error) {
	var n json.Number
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] == '"' || strictUnmarshal(t, &n) != nil {
		return 0, fmt.Errorf("must be an integer, got %s", describe(raw))
	}
	i, err := n.Int64()
	if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
		if f, ok := new(big.Float).SetString(n.String()); ok && f.IsInt() {
			return 0, fmt.Errorf("%s is out of range", n)
		}
		return 0, fmt.Errorf("must be an integer, got %s", n)
	}
	return int(i), nil
}

func positiveInt(raw json.RawMessage) (int, error) {
	n, err := wholeNumber(raw)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("must be greater than 0, got %d", n)
	}
	return n, nil
}

func describe(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return truncate(string(raw), 40)
}

func plausibleEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && len(s) <= 254 && !strings.ContainsAny(s, " \t\r\n")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

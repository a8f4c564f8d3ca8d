package mautic

// The gjson decoders of answers.go checked against a reference: the
// encoding/json decode they replaced (issue #6), kept here verbatim but for
// one deliberate difference (refContactList). Both are run the way
// Client.do runs them, through a json.Decoder, and the new ones also on the
// whole body (decodeBody), on seeds, on generated answers full of Mautic's
// quirks and on the fake's real answers. For a longer search:
//
//	go test -run '^$' -fuzz=FuzzAnswers -fuzztime=5m ./mautic/

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// refBatchResponse, refContactID, refDecodeBatch, refDeleted and
// refContactList are the decoders before #6.
type refBatchResponse struct {
	Contacts    json.RawMessage `json:"contacts"`
	StatusCodes []int           `json:"statusCodes"`
	Errors      json.RawMessage `json:"errors"`
}

type refContactID struct {
	ID int `json:"id"`
}

func refDecodeBatch(br refBatchResponse, n int) ([]ItemResult, error) {
	if len(br.StatusCodes) != n {
		return nil, fmt.Errorf("response has %d status codes for %d items", len(br.StatusCodes), n)
	}
	contacts, err := decodeIndexed[refContactID](br.Contacts)
	if err != nil {
		return nil, fmt.Errorf("decode contacts: %w", err)
	}
	errs, err := decodeIndexed[ErrorDetail](br.Errors)
	if err != nil {
		return nil, fmt.Errorf("decode errors: %w", err)
	}
	out := make([]ItemResult, n)
	for i := range out {
		out[i].Status = br.StatusCodes[i]
		if c, ok := contacts[i]; ok {
			out[i].ContactID = c.ID
		}
		if e, ok := errs[i]; ok {
			e := e
			out[i].Error = &e
			if out[i].Status < 300 {
				out[i].Status = max(e.Code, http.StatusBadRequest)
			}
		} else if out[i].Status >= 200 && out[i].Status < 300 && out[i].ContactID <= 0 {
			out[i].Error = &ErrorDetail{Code: out[i].Status, Message: "Mautic reported success but returned no contact"}
			out[i].Status = http.StatusBadGateway
		}
	}
	return out, nil
}

func refDeleted(raw json.RawMessage) ([]int, error) {
	got, err := decodeIndexed[refContactID](raw)
	if err != nil {
		return nil, err
	}
	deleted := make([]int, 0, len(got))
	for _, i := range sortedKeys(got) {
		deleted = append(deleted, got[i].ID)
	}
	return deleted, nil
}

// refContactList is decodeContactList before #6 but for fields.all, a
// map[string]json.RawMessage here where it was a map[string]any: that
// refused a whole answer for a number beyond float64's range in any field
// of any contact, which the new decoder deliberately does not.
func refContactList(raw json.RawMessage) ([]listedContact, error) {
	type item struct {
		ID     int `json:"id"`
		Fields struct {
			All map[string]json.RawMessage `json:"all"`
		} `json:"fields"`
	}
	raw = bytes.TrimSpace(raw)
	var items []item
	switch {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '[':
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
	default:
		var m map[string]item
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		for _, v := range m {
			items = append(items, v)
		}
	}
	out := make([]listedContact, 0, len(items))
	for _, it := range items {
		var email string
		_ = json.Unmarshal(it.Fields.All["email"], &email)
		out = append(out, listedContact{id: it.ID, email: email})
	}
	return out, nil
}

// decodeLikeDo decodes body into v as Client.do does.
func decodeLikeDo(body []byte, v any) error {
	return json.NewDecoder(io.LimitReader(bytes.NewReader(body), maxBody)).Decode(v)
}

// The three calls, each decoded by the reference, by the new decoder
// behind json.Decoder (today's client path) and by the new decoder on the
// whole body.
type decoded struct {
	batch   []ItemResult
	deleted []int
	listed  []listedContact
	err     error
}

func refDecode(op string, body []byte, n int) decoded {
	switch op {
	case "batch":
		var br refBatchResponse
		if err := decodeLikeDo(body, &br); err != nil {
			return decoded{err: err}
		}
		res, err := refDecodeBatch(br, n)
		return decoded{batch: res, err: err}
	case "delete":
		var b struct {
			Contacts json.RawMessage `json:"contacts"`
		}
		if err := decodeLikeDo(body, &b); err != nil {
			return decoded{err: err}
		}
		ids, err := refDeleted(b.Contacts)
		return decoded{deleted: ids, err: err}
	default:
		var b struct {
			Contacts json.RawMessage `json:"contacts"`
		}
		if err := decodeLikeDo(body, &b); err != nil {
			return decoded{err: err}
		}
		found, err := refContactList(b.Contacts)
		return decoded{listed: found, err: err}
	}
}

// newDecode decodes body with the new decoders, through a json.Decoder as
// Client.do does, or else with decodeBody.
func newDecode(op string, body []byte, n int, viaDecoder bool) decoded {
	run := func(a interface {
		json.Unmarshaler
		bodyDecoder
	}) error {
		if viaDecoder {
			return decodeLikeDo(body, a)
		}
		return a.decodeBody(body)
	}
	var d decoded
	switch op {
	case "batch":
		a := answer[[]ItemResult]{parse: func(js string) ([]ItemResult, error) { return parseBatch(js, n) }}
		if d.err = run(&a); d.err == nil {
			d.batch, d.err = a.result()
		}
	case "delete":
		a := answer[[]int]{parse: parseDeleted}
		if d.err = run(&a); d.err == nil {
			d.deleted, d.err = a.result()
		}
	default:
		a := answer[[]listedContact]{parse: parseContactList}
		if d.err = run(&a); d.err == nil {
			d.listed, d.err = a.result()
		}
	}
	return d
}

// refAmbiguous reports whether the reference's answer to body depended on
// map order: `contacts` (or, for a batch, `errors`) is an object with two
// keys naming one index ("1" and "01"), which the new decoders resolve as
// the last.
func refAmbiguous(op string, body []byte) bool {
	var b struct {
		Contacts json.RawMessage `json:"contacts"`
		Errors   json.RawMessage `json:"errors"`
	}
	if decodeLikeDo(body, &b) != nil {
		return false
	}
	switch op {
	case "batch":
		return indexCollision(b.Contacts) || indexCollision(b.Errors)
	case "delete":
		return indexCollision(b.Contacts)
	}
	return false
}

// indexCollision reports whether raw is an object with two keys naming
// one index.
func indexCollision(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	seen := map[int]bool{}
	for k := range m {
		if i, err := strconv.Atoi(k); err == nil {
			if seen[i] {
				return true
			}
			seen[i] = true
		}
	}
	return false
}

func sortedListed(l []listedContact) []listedContact {
	l = slices.Clone(l)
	slices.SortFunc(l, func(a, b listedContact) int {
		if a.id != b.id {
			return a.id - b.id
		}
		return strings.Compare(a.email, b.email)
	})
	return l
}

// agree reports how got differs from want, or "". When ambiguous, only
// whether both failed counts.
func agree(op string, got, want decoded, ambiguous bool) string {
	if (got.err == nil) != (want.err == nil) {
		return fmt.Sprintf("error %v, reference error %v", got.err, want.err)
	}
	if got.err != nil || ambiguous {
		return ""
	}
	switch op {
	case "batch":
		if len(got.batch) == 0 && len(want.batch) == 0 {
			return ""
		}
		if !reflect.DeepEqual(got.batch, want.batch) {
			return fmt.Sprintf("results\n%s\nreference\n%s", showResults(got.batch), showResults(want.batch))
		}
	case "delete":
		if !slices.Equal(got.deleted, want.deleted) {
			return fmt.Sprintf("deleted %v, reference %v", got.deleted, want.deleted)
		}
	default:
		if g, w := sortedListed(got.listed), sortedListed(want.listed); !slices.Equal(g, w) {
			return fmt.Sprintf("listed %+v, reference %+v", g, w)
		}
	}
	return ""
}

func showResults(rs []ItemResult) string {
	var b strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&b, "  %d: status %d id %d", i, r.Status, r.ContactID)
		if r.Error != nil {
			fmt.Fprintf(&b, " error %+v (details %s)", *r.Error, r.Error.Details)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkAnswer compares the new decoders with the reference on body.
func checkAnswer(t *testing.T, body []byte, n int) {
	t.Helper()
	valid := json.Valid(body)
	for _, op := range []string{"batch", "delete", "list"} {
		want, ambiguous := refDecode(op, body, n), refAmbiguous(op, body)
		if diff := agree(op, newDecode(op, body, n, true), want, ambiguous); diff != "" {
			t.Fatalf("%s of %d items, through json.Decoder: %s\nbody %q", op, n, diff, body)
		}
		got := newDecode(op, body, n, false)
		switch {
		case valid:
			if diff := agree(op, got, want, ambiguous); diff != "" {
				t.Fatalf("%s of %d items, whole body: %s\nbody %q", op, n, diff, body)
			}
		case got.err == nil && !tooDeep(body):
			// Not one JSON value (json.Decoder took the first of several,
			// or stopped at the first error).
			t.Fatalf("%s of %d items, whole body: no error for invalid JSON %q", op, n, body)
		}
	}
}

// tooDeep reports whether encoding/json refuses body only for its nesting
// (deeper than 10000), which gjson accepts.
func tooDeep(body []byte) bool {
	var v any
	err := json.Unmarshal(body, &v)
	return err != nil && strings.Contains(err.Error(), "exceeded max depth")
}

// answerSeeds are answers with Mautic's quirks, and broken ones.
var answerSeeds = []string{
	``, ` `, `null`, ` null `, `{}`, `[]`, `"x"`, `0`, `true`, `{"contacts":null}`,
	`{"contacts":[{"id":1},{"id":2}],"statusCodes":[201,200]}`,
	`{"contacts":[{"id":1},{"id":2}],"statusCodes":[201,200]} trailing`,
	`{"contacts":[{"id":1},{"id":2}],"statusCodes":[201,200]}{"statusCodes":[]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201]`,
	`{"contacts":{"1":{"id":7}},"statusCodes":[422,201],"errors":{"0":{"code":422,"message":"email: bad","details":{"email":["bad"]},"type":null}}}`,
	`{"contacts":{"1":{"id":5}},"statusCodes":[404,200],"errors":[{"message":"Item was not found.","code":404,"type":"api"}]}`,
	`{"contacts":{"0":{"id":-3}},"statusCodes":[201]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[{"code":200,"message":"contradiction"}]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[null]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":{"0":null}}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[5]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[{"code":"422","message":{"email":"bad"},"type":5}]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":"x"}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"errors":[]}`,
	`{"contacts":{"x":{"id":1}},"statusCodes":[201]}`,
	`{"contacts":{"":{"id":1}},"statusCodes":[201]}`,
	`{"contacts":{"+0":{"id":4},"-1":{"id":5},"7":{"id":6}},"statusCodes":[201]}`,
	`{"contacts":{"0":{"id":4},"0":{"id":5}},"statusCodes":[201]}`,
	`{"contacts":{"0":{"id":4},"00":{"id":5}},"statusCodes":[201]}`,
	`{"contacts":[{"id":"5"}],"statusCodes":[201]}`,
	`{"contacts":[{"id":5.0}],"statusCodes":[201]}`,
	`{"contacts":[{"id":1e2}],"statusCodes":[201]}`,
	`{"contacts":[{"id":-0}],"statusCodes":[201]}`,
	`{"contacts":[{"id":99999999999999999999}],"statusCodes":[201]}`,
	`{"contacts":[{"id":null}],"statusCodes":[201]}`,
	`{"contacts":[{"id":true}],"statusCodes":[201]}`,
	`{"contacts":[{"id":{}}],"statusCodes":[201]}`,
	`{"contacts":[{"id":4,"id":null}],"statusCodes":[201]}`,
	`{"contacts":[{"id":4,"ID":6}],"statusCodes":[201]}`,
	`{"contacts":[{"Id":"x","id":6}],"statusCodes":[201]}`,
	`{"contacts":[{"\u0069d":8}],"statusCodes":[201]}`,
	`{"contacts":[{"fields":{"id":9,"all":{"id":9}}}],"statusCodes":[201]}`,
	`{"contacts":[null,{"id":2},5],"statusCodes":[201,201,201]}`,
	`{"contacts":[[]],"statusCodes":[201]}`,
	`{"contacts":"x","statusCodes":[201]}`,
	`{"contacts":7,"statusCodes":[201]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"contacts":[]}`,
	`{"contacts":[5],"contacts":[{"id":1}],"statusCodes":[201]}`,
	`{"Contacts":[{"id":1}],"STATUSCODES":[201],"Errors":[{"code":404}]}`,
	`{"contact\u017f":[{"id":1}],"statusCodes":[201]}`,
	`{"contacts":[{"id":1}],"statusCodes":["201"]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201.5]}`,
	`{"contacts":[{"id":1}],"statusCodes":[null]}`,
	`{"contacts":[{"id":1}],"statusCodes":{"0":201}}`,
	`{"contacts":[{"id":1}],"statusCodes":"x","statusCodes":[201]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"statusCodes":null}`,
	`{"contacts":[{"id":1}],"statusCodes":[422,200,200],"statusCodes":[400,null,422]}`,
	`{"contacts":[{"id":1}],"statusCodes":[422,200,201],"statusCodes":[400],"statusCodes":[null,null,null]}`,
	`{"contacts":[{"id":1}],"statusCodes":[422,200,201],"statusCodes":[],"statusCodes":[null,null,null]}`,
	`{"contacts":[{"id":1}],"statusCodes":[100]}`,
	`{"contacts":[{"id":1,"fields":{"core":{"email":{"value":"a@b.c"}}}}],"statusCodes":[201]}`,
	`{"contacts":{"5":{"id":1,"fields":{"all":{"email":"a@b.c"}}}},"total":"1"}`,
	`{"contacts":{"5":{"id":5,"fields":{"all":{"email":"A@x"}}},"5":{"id":6,"fields":{"all":{"email":"a@x"}}}}}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x"}}},null,{"id":2}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x"},"all":{"x":1}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x"},"all":null}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x"}},"fields":{"core":{}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x"}},"fields":null}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":5}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"Email":"a@x"}}}]}`,
	`{"contacts":[{"id":1,"fields":{"ALL":{"email":"\u0041@x\ud800"}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"\u00e9l\u00e8ve@\u00e9cole.fr"}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":{"email":"a@x","x":1e999}}}]}`,
	`{"contacts":[{"id":1,"fields":{"all":[]}}]}`,
	`{"contacts":[{"id":1,"fields":[]}]}`,
	`{"contacts":[{"id":1,"fields":"x"}]}`,
	`{"details":{"1":{"success":1},"2":{"success":"0"}}}`,
	`{"errors":[{"code":404,"message":"Item was not found.","details":[]}]}`,
	`<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head></html>`,
	"{\"contacts\":[{\"id\":1}],\"statusCodes\":[201],\"x\":\"\xff\"}",
	"{\"contacts\":[{\"id\":1}],\"statusCodes\":[201],\"x\":\"a\x01\"}",
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":"\q"}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":[1,]}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":01}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":-}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":1.}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],"x":tru}`,
	`{"contacts":[{"id":1}],"statusCodes":[201],,}`,
	`{"contacts":[{"id":1}] "statusCodes":[201]}`,
	`{"contacts" [{"id":1}],"statusCodes":[201]}`,
	`{'contacts':[{"id":1}],"statusCodes":[201]}`,
	` { "contacts" : [ { "id" : 1 } , { "id" : 2 } ] , "statusCodes" : [ 201 , 200 ] } `,
}

func TestAnswersAgreeOnSeeds(t *testing.T) {
	for _, s := range answerSeeds {
		for n := 1; n <= 3; n++ {
			checkAnswer(t, []byte(s), n)
		}
	}
}

// TestAnswersAgreeOnGenerated checks the decoders against the reference on
// answers generated from Mautic's shapes and quirks.
func TestAnswersAgreeOnGenerated(t *testing.T) {
	cases := 20000
	if testing.Short() {
		cases = 2000
	}
	r := rand.New(rand.NewPCG(6, 6))
	for range cases {
		g := answerGen{r}
		body := []byte(g.answer())
		checkAnswer(t, body, 1+r.IntN(4))
	}
}

// answerGen writes random answers from the shapes Mautic (and a broken
// Mautic) produces.
type answerGen struct{ r *rand.Rand }

func (g answerGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g answerGen) answer() string {
	var s string
	switch g.r.IntN(30) {
	case 0:
		s = g.pick(`null`, `[]`, `"x"`, `5`, `[{"id":1}]`)
	default:
		var members []string
		for range g.r.IntN(5) {
			name := g.pick(`contacts`, `contacts`, `contacts`, `Contacts`, `statusCodes`, `statusCodes`, `statuscodes`,
				`errors`, `errors`, `ERRORS`, `total`, `x`, `contact\u0073`)
			var v string
			switch strings.ToLower(strings.ReplaceAll(name, `\u0073`, "s")) {
			case "contacts":
				v = g.indexed(g.contact)
			case "statuscodes":
				v = g.codes()
			case "errors":
				v = g.indexed(g.errorEntry)
			default:
				v = g.junk(2)
			}
			members = append(members, fmt.Sprintf("%q%s:%s", name, g.pick("", " "), v))
		}
		s = "{" + strings.Join(members, g.pick(",", ", ")) + "}"
		s = strings.ReplaceAll(s, `\\u0073`, `\u0073`)
	}
	switch g.r.IntN(40) {
	case 0:
		s = s[:g.r.IntN(len(s)+1)] // truncated
	case 1:
		s += g.pick(` `, `x`, `{}`, "\n")
	case 2:
		if len(s) > 0 { // one byte broken
			i := g.r.IntN(len(s))
			s = s[:i] + g.pick(`"`, `,`, `}`, `]`, `:`, "\x00", `\`) + s[i+1:]
		}
	}
	return s
}

func (g answerGen) codes() string {
	switch g.r.IntN(12) {
	case 0:
		return g.pick(`null`, `{"0":201}`, `"201"`, `201`)
	}
	var els []string
	for range 1 + g.r.IntN(4) {
		if g.r.IntN(12) == 0 {
			els = append(els, g.pick(`"201"`, `201.0`, `2e2`, `null`, `true`, `99999999999999999999`, `-1`, `0`))
		} else {
			els = append(els, g.pick(`201`, `200`, `201`, `200`, `404`, `422`, `400`, `500`))
		}
	}
	return "[" + strings.Join(els, ",") + "]"
}

// indexed writes a PHP array of el: a JSON array, an object keyed by index,
// or not a collection at all.
func (g answerGen) indexed(el func() string) string {
	switch g.r.IntN(12) {
	case 0:
		return g.pick(`null`, `[]`, `{}`, `"x"`, `5`, `true`)
	case 1, 2, 3, 4, 5:
		var els []string
		for range g.r.IntN(5) {
			els = append(els, el())
		}
		return "[" + strings.Join(els, ",") + "]"
	}
	var members []string
	for range g.r.IntN(5) {
		var key string
		if g.r.IntN(8) == 0 {
			key = g.pick(`01`, `+1`, `-1`, `x`, ``, `1.0`, `99999999999999999999`, `\u0031`, `10`)
		} else {
			key = strconv.Itoa(g.r.IntN(5))
		}
		members = append(members, `"`+key+`":`+el())
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (g answerGen) contact() string {
	switch g.r.IntN(15) {
	case 0:
		return g.pick(`null`, `5`, `"x"`, `[]`, `[{"id":1}]`)
	}
	var members []string
	for range g.r.IntN(6) {
		switch g.r.IntN(6) {
		case 0, 1, 2:
			members = append(members, fmt.Sprintf(`"%s":%s`, g.pick(`id`, `id`, `id`, `ID`, `Id`, `\u0069d`, `idx`), g.id()))
		case 3:
			members = append(members, `"fields":`+g.fields())
		default:
			members = append(members, fmt.Sprintf(`"%s":%s`, g.pick(`points`, `color`, `tags`, `dateAdded`, `ipAddresses`), g.junk(3)))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (g answerGen) id() string {
	if g.r.IntN(6) == 0 {
		return g.pick(`"5"`, `5.0`, `1e2`, `-0`, `null`, `true`, `{}`, `[]`, `99999999999999999999`, `-3`, `0`)
	}
	return strconv.Itoa(1 + g.r.IntN(50))
}

func (g answerGen) fields() string {
	switch g.r.IntN(12) {
	case 0:
		return g.pick(`null`, `[]`, `"x"`, `5`)
	}
	var members []string
	for range g.r.IntN(4) {
		switch g.r.IntN(3) {
		case 0, 1:
			members = append(members, `"`+g.pick(`all`, `all`, `All`)+`":`+g.all())
		default:
			members = append(members, `"`+g.pick(`core`, `social`, `id`)+`":`+g.junk(3))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (g answerGen) all() string {
	switch g.r.IntN(12) {
	case 0:
		return g.pick(`null`, `[]`, `"x"`, `5`)
	}
	var members []string
	for range g.r.IntN(4) {
		if g.r.IntN(3) > 0 {
			members = append(members, `"`+g.pick(`email`, `email`, `email`, `Email`)+`":`+
				g.pick(`"a@x"`, `"B@x"`, `" c@x "`, `"\u0041@x"`, `"é@x"`, `""`, `null`, `5`, `{}`, `"a@x\ud800"`))
		} else {
			members = append(members, `"`+g.pick(`firstname`, `id`, `points`)+`":`+g.junk(2))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (g answerGen) errorEntry() string {
	switch g.r.IntN(10) {
	case 0:
		return g.pick(`null`, `5`, `"x"`, `[]`)
	}
	var members []string
	if g.r.IntN(6) > 0 {
		members = append(members, `"code":`+g.pick(`404`, `422`, `400`, `200`, `201`, `"422"`, `null`, `"x"`, `4.5`))
	}
	if g.r.IntN(6) > 0 {
		members = append(members, `"message":`+g.pick(`"Item was not found."`, `"email: bad"`, `{"email":"bad"}`, `null`, `5`))
	}
	if g.r.IntN(3) == 0 {
		members = append(members, `"type":`+g.pick(`null`, `"api"`, `5`))
	}
	if g.r.IntN(3) == 0 {
		members = append(members, `"details":`+g.junk(2))
	}
	g.r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	return "{" + strings.Join(members, ",") + "}"
}

// junk is any JSON value, nested up to depth.
func (g answerGen) junk(depth int) string {
	k := g.r.IntN(8)
	if depth == 0 {
		k %= 5
	}
	switch k {
	case 0:
		return g.pick(`null`, `true`, `false`)
	case 1:
		return g.pick(`0`, `-1.5e3`, `1e999`, `42`)
	case 2:
		return g.pick(`""`, `"x"`, `"http:\/\/x.io"`, `"\"}]"`, `"{["`)
	case 3, 4:
		return g.pick(`[]`, `{}`)
	case 5:
		var els []string
		for range g.r.IntN(3) {
			els = append(els, g.junk(depth-1))
		}
		return "[" + strings.Join(els, ",") + "]"
	default:
		var members []string
		for range g.r.IntN(3) {
			members = append(members, fmt.Sprintf(`"%s":%s`, g.pick(`id`, `email`, `all`, `value`, `contacts`), g.junk(depth-1)))
		}
		return "{" + strings.Join(members, ",") + "}"
	}
}

// The fake's answers to 200-item batches: the new decoders read them as the
// reference does.
func TestAnswersAgreeOnFakeAnswers(t *testing.T) {
	for name, body := range fakeAnswers(t) {
		n := 200
		if name == "search" || name == "delete" {
			n = 1
		}
		checkAnswer(t, body, n)
		if strings.HasPrefix(name, "batch") {
			got := newDecode("batch", body, n, true)
			if got.err != nil || len(got.batch) != 200 || got.batch[0].ContactID <= 0 {
				t.Fatalf("%s: %v %+v", name, got.err, got.batch)
			}
			if name == "batch-one-failed" && (got.batch[17].OK() || got.batch[17].Error == nil || !got.batch[18].OK()) {
				t.Errorf("%s: item 17 %+v, item 18 %+v", name, got.batch[17], got.batch[18])
			}
		}
	}
}

// The decoders copy out what they keep: the body's buffer is reused.
func TestAnswersDoNotKeepTheBody(t *testing.T) {
	body := []byte(`{"contacts":{"0":{"id":7,"fields":{"all":{"email":"a@x"}}},"1":{"id":8,"fields":{"all":{"email":"\u0062@x"}}}},` +
		`"statusCodes":[201,422],"errors":{"1":{"code":422,"message":"email: bad","details":{"email":["bad"]},"type":"t"}}}`)
	want := map[string]decoded{}
	for _, op := range []string{"batch", "delete", "list"} {
		want[op] = newDecode(op, bytes.Clone(body), 2, true)
	}
	for _, op := range []string{"batch", "delete", "list"} {
		buf := bytes.Clone(body)
		var got decoded
		switch op {
		case "batch":
			a := answer[[]ItemResult]{parse: func(js string) ([]ItemResult, error) { return parseBatch(js, 2) }}
			got.err = a.decodeBody(buf)
			got.batch, _ = a.result()
		case "delete":
			a := answer[[]int]{parse: parseDeleted}
			got.err = a.decodeBody(buf)
			got.deleted, _ = a.result()
		default:
			a := answer[[]listedContact]{parse: parseContactList}
			got.err = a.decodeBody(buf)
			got.listed, _ = a.result()
		}
		for i := range buf {
			buf[i] = 'X'
		}
		if got.err != nil {
			t.Fatal(got.err)
		}
		if diff := agree(op, got, want[op], false); diff != "" {
			t.Errorf("%s after the body was overwritten: %s", op, diff)
		}
	}
}

// A body nested millions deep is refused, not a stack overflow (fatal).
func TestValidJSONDeepNesting(t *testing.T) {
	deep := bytes.Repeat([]byte{'['}, 16<<20)
	if validJSON(deep) {
		t.Error("16 MiB of '[' is valid")
	}
	deep = append(bytes.Repeat([]byte{'['}, 20000), bytes.Repeat([]byte{']'}, 20000)...)
	if !validJSON(deep) {
		t.Error("20000 nested arrays are not valid") // gjson's check: below maxFastBrackets
	}
	many := append([]byte{'['}, bytes.Repeat([]byte("[],"), maxFastBrackets/2)...)
	many = append(many, '[', ']', ']')
	if !validJSON(many) || validJSON(many[:len(many)-1]) {
		t.Error("encoding/json's check is wrong")
	}
}

type eofReader struct {
	r   io.Reader
	err error
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF && e.err != nil {
		err = e.err
	}
	return n, err
}

func TestReadAnswer(t *testing.T) {
	body := []byte(`{"contacts":[{"id":3}],"statusCodes":[201]}`)
	for _, size := range []int64{-1, 0, 5, int64(len(body)), int64(len(body)) + 100} {
		a := answer[[]ItemResult]{parse: func(js string) ([]ItemResult, error) { return parseBatch(js, 1) }}
		if err := new(answerReader).readAnswer(bytes.NewReader(body), size, &a); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if res, err := a.result(); err != nil || res[0].ContactID != 3 {
			t.Fatalf("size %d: %v %+v", size, err, res)
		}
	}
	a := answer[[]int]{parse: parseDeleted}
	broken := errors.New("connection reset")
	if err := new(answerReader).readAnswer(&eofReader{bytes.NewReader(body), broken}, -1, &a); !errors.Is(err, broken) {
		t.Errorf("read error %v", err)
	}
	if err := new(answerReader).readAnswer(bytes.NewReader(body[:20]), -1, &a); err == nil {
		t.Error("no error for a truncated body")
	}
}

func FuzzAnswers(f *testing.F) {
	for i, s := range answerSeeds {
		f.Add(uint8(i%3+1), []byte(s))
	}
	g := answerGen{rand.New(rand.NewPCG(1, 2))}
	for range 50 {
		f.Add(uint8(g.r.IntN(4)+1), []byte(g.answer()))
	}
	f.Fuzz(func(t *testing.T, n uint8, body []byte) {
		if n == 0 || n > 10 {
			return
		}
		checkAnswer(t, body, int(n))
	})
}

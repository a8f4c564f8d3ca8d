package subject_test

import (
	"testing"

	"github.com/mautic-sync/mautic-sync/queue/subject"
)

func TestMatches(t *testing.T) {
	cases := []struct {
		filter, subject string
		want            bool
	}{
		{"mautic.contacts.>", "mautic.contacts.a", true},
		{"mautic.contacts.>", "mautic.contacts.a.b", true},
		{"mautic.contacts.>", "mautic.contacts", false},
		{"mautic.contacts.*", "mautic.contacts.a.b", false},
		{"mautic.*.x", "mautic.a.x", true},
		{"mautic.contacts.>", "mautic.sync.result", false},
		{"a.b", "a.b", true},
	}
	for _, c := range cases {
		if got := subject.Matches(c.filter, c.subject); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}

func TestValid(t *testing.T) {
	cases := []struct {
		s    string
		wild bool
		want bool
	}{
		{"mautic.sync.result", false, true},
		{"mautic.>", false, false},
		{"mautic.>", true, true},
		{"mautic.>.x", true, false},
		{"a..b", false, false},
		{"", false, false},
		{"a b", false, false},
	}
	for _, c := range cases {
		if got := subject.Valid(c.s, c.wild); got != c.want {
			t.Errorf("Valid(%q, %v) = %v, want %v", c.s, c.wild, got, c.want)
		}
	}
}

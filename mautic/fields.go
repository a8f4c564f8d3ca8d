package mautic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Field is a contact field as GET /api/fields/contact describes it.
type Field struct {
	ID                 int    `json:"id"`
	Alias              string `json:"alias"`
	Label              string `json:"label"`
	Type               string `json:"type"`
	Group              string `json:"group"`
	IsPublished        bool   `json:"isPublished"`
	IsUniqueIdentifier bool   `json:"isUniqueIdentifier"`
}

// ContactFields lists the contact fields (GET /api/fields/contact). Mautic
// silently ignores payload keys that are not among their aliases.
func (c *Client) ContactFields(ctx context.Context) ([]Field, *Response, error) {
	var body struct {
		Fields json.RawMessage `json:"fields"`
	}
	q := url.Values{"limit": {"0"}}
	resp, err := c.do(ctx, "fields/contact", http.MethodGet, "/fields/contact", q, nil, &body)
	if err != nil {
		return nil, resp, err
	}
	got, err := decodeIndexed[Field](body.Fields)
	if err != nil {
		return nil, resp, fmt.Errorf("mautic: list fields: %w", err)
	}
	out := make([]Field, 0, len(got))
	for _, i := range sortedKeys(got) {
		out = append(out, got[i])
	}
	return out, resp, nil
}

package mautic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// AddToSegment adds contacts to a segment in one call
// (POST /api/segments/{id}/contacts/add). The result says, per contact id,
// whether Mautic added it; false means the contact is missing or not
// accessible. An unknown segment is an *APIError with status 404.
func (c *Client) AddToSegment(ctx context.Context, segmentID int, contactIDs []int) (map[int]bool, *Response, error) {
	out := make(map[int]bool, len(contactIDs))
	if len(contactIDs) == 0 {
		return out, nil, nil
	}
	var body struct {
		Details map[string]struct {
			Success json.RawMessage `json:"success"`
		} `json:"details"`
	}
	path := "/segments/" + strconv.Itoa(segmentID) + "/contacts/add"
	resp, err := c.do(ctx, "segments/{id}/contacts/add", http.MethodPost, path, nil, map[string]any{"ids": contactIDs}, &body)
	if err != nil {
		return nil, resp, err
	}
	for _, id := range contactIDs {
		d, ok := body.Details[strconv.Itoa(id)]
		out[id] = ok && truthy(d.Success)
	}
	return out, resp, nil
}

// RemoveFromSegment removes one contact from a segment
// (POST /api/segments/{id}/contact/{contactId}/remove); Mautic has no batch
// route for removal. A missing segment or contact is an *APIError with
// status 404.
func (c *Client) RemoveFromSegment(ctx context.Context, segmentID, contactID int) (*Response, error) {
	path := fmt.Sprintf("/segments/%d/contact/%d/remove", segmentID, contactID)
	return c.do(ctx, "segments/{id}/contact/{id}/remove", http.MethodPost, path, nil, nil, nil)
}

// AdjustPoints changes a contact's points by delta
// (POST /api/contacts/{id}/points/plus|minus/{n}). eventName is recorded in
// the contact's points history. A missing contact is an *APIError with
// status 404.
func (c *Client) AdjustPoints(ctx context.Context, contactID, delta int, eventName string) (*Response, error) {
	op, n := "plus", delta
	if delta < 0 {
		op, n = "minus", -delta
	}
	path := fmt.Sprintf("/contacts/%d/points/%s/%d", contactID, op, n)
	var body any
	if eventName != "" {
		body = map[string]string{"eventName": eventName, "actionName": "mautic-sync"}
	}
	return c.do(ctx, "contacts/{id}/points/{op}/{n}", http.MethodPost, path, nil, body, nil)
}

// truthy reads Mautic's loose booleans: true, 1, "1".
func truthy(raw json.RawMessage) bool {
	switch string(raw) {
	case "true", "1", `"1"`, `"true"`:
		return true
	}
	return false
}

package mautic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Contact is a contact payload: field aliases to values, plus Mautic's
// extra keys (tags, doNotContact, overwriteWithBlank, id for batch edits).
type Contact map[string]any

// DoNotContact is one entry of a contact payload's doNotContact list.
// Reason 0 removes the channel's DNC record; 1 unsubscribed, 2 bounced,
// 3 manual.
type DoNotContact struct {
	Channel  string `json:"channel"`
	Reason   int    `json:"reason"`
	Comments string `json:"comments,omitempty"`
}

// ItemResult is the outcome of one item of a batch call.
type ItemResult struct {
	// Status is Mautic's statusCodes[i]: 201 created, 200 updated, or the
	// item's error status (400, 403, 404, 422...).
	Status int
	// ContactID is the contact's id when the item succeeded.
	ContactID int
	// Error is set when the item failed.
	Error *ErrorDetail
}

// OK reports whether the item succeeded.
func (r ItemResult) OK() bool { return r.Status >= 200 && r.Status < 300 && r.Error == nil }

// BatchUpsert creates or updates contacts (POST /api/contacts/batch/new):
// each item is matched on Mautic's unique identifier fields (email by
// default) and updated when found, created when not. The result has one
// entry per item, in order. The call answers 201 even when items fail; the
// per-item status is in the result.
func (c *Client) BatchUpsert(ctx context.Context, items []Contact) ([]ItemResult, *Response, error) {
	return c.batch(ctx, http.MethodPost, "/contacts/batch/new", items)
}

// BatchEdit updates contacts by id (PATCH /api/contacts/batch/edit). Every
// item needs an "id". An unknown id answers the item with 404.
func (c *Client) BatchEdit(ctx context.Context, items []Contact) ([]ItemResult, *Response, error) {
	for i, it := range items {
		if _, ok := it["id"]; !ok {
			return nil, nil, fmt.Errorf("mautic: batch edit: item %d has no id", i)
		}
	}
	return c.batch(ctx, http.MethodPatch, "/contacts/batch/edit", items)
}

func (c *Client) batch(ctx context.Context, method, path string, items []Contact) ([]ItemResult, *Response, error) {
	if len(items) == 0 {
		return nil, nil, nil
	}
	n := len(items)
	ans := answer[[]ItemResult]{parse: func(js string) ([]ItemResult, error) { return parseBatch(js, n) }}
	resp, err := c.do(ctx, strings.TrimPrefix(path, "/"), method, path, nil, items, &ans)
	if err != nil {
		return nil, resp, err
	}
	res, err := ans.result()
	if err != nil {
		return nil, resp, fmt.Errorf("mautic: %s %s: %w", method, path, err)
	}
	return res, resp, nil
}

// decodeIndexed decodes a JSON array, an object keyed by decimal index, or
// null/absent, into a map from index to element.
func decodeIndexed[T any](raw json.RawMessage) (map[int]T, error) {
	raw = bytes.TrimSpace(raw)
	out := map[int]T{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	switch raw[0] {
	case '[':
		var arr []T
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, err
		}
		for i, v := range arr {
			out[i] = v
		}
	case '{':
		var obj map[string]T
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		for k, v := range obj {
			i, err := strconv.Atoi(k)
			if err != nil {
				return nil, fmt.Errorf("key %q is not an item index", k)
			}
			out[i] = v
		}
	default:
		return nil, fmt.Errorf("want an array or object, got %.20s", raw)
	}
	return out, nil
}

func sortedKeys[T any](m map[int]T) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// BatchDelete deletes contacts by id (DELETE /api/contacts/batch/delete).
// It returns the ids Mautic deleted; unknown ids are silently skipped by
// Mautic, so an id missing from the result was already gone.
func (c *Client) BatchDelete(ctx context.Context, ids []int) ([]int, *Response, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	ans := answer[[]int]{parse: parseDeleted}
	q := url.Values{"ids": {strings.Join(parts, ",")}}
	resp, err := c.do(ctx, "contacts/batch/delete", http.MethodDelete, "/contacts/batch/delete", q, nil, &ans)
	if err != nil {
		return nil, resp, err
	}
	deleted, err := ans.result()
	if err != nil {
		return nil, resp, fmt.Errorf("mautic: batch delete: %w", err)
	}
	return deleted, resp, nil
}

// FindByEmail looks contacts up by exact email (GET /api/contacts with a
// where[] filter, not the prefix-matching search). The result maps each
// lower-cased email to its contact ids, newest first; emails without a
// contact are absent. Mautic may hold duplicates of one email.
func (c *Client) FindByEmail(ctx context.Context, emails []string) (map[string][]int, *Response, error) {
	out := map[string][]int{}
	if len(emails) == 0 {
		return out, nil, nil
	}
	q := url.Values{}
	q.Set("where[0][col]", "email")
	// "in" takes a comma-separated list: an address with a comma (legal
	// when quoted) must be asked for on its own with "eq".
	if len(emails) == 1 || slices.ContainsFunc(emails, func(e string) bool { return strings.Contains(e, ",") }) {
		if len(emails) > 1 {
			var last *Response
			for _, e := range emails {
				m, resp, err := c.FindByEmail(ctx, []string{e})
				last = resp
				if err != nil {
					return nil, resp, err
				}
				for k, v := range m {
					out[k] = v
				}
			}
			return out, last, nil
		}
		q.Set("where[0][expr]", "eq")
	} else {
		q.Set("where[0][expr]", "in")
	}
	q.Set("where[0][val]", strings.Join(emails, ","))
	q.Set("limit", "0") // no LIMIT: duplicates included
	q.Set("orderBy", "id")
	q.Set("orderByDir", "DESC")
	ans := answer[[]listedContact]{parse: parseContactList}
	resp, err := c.do(ctx, "contacts", http.MethodGet, "/contacts", q, nil, &ans)
	if err != nil {
		return nil, resp, err
	}
	found, err := ans.result()
	if err != nil {
		return nil, resp, fmt.Errorf("mautic: find contacts: %w", err)
	}
	for _, f := range found {
		key := strings.ToLower(strings.TrimSpace(f.email))
		if f.id <= 0 || key == "" {
			continue // not a usable contact: no id or no email to match
		}
		out[key] = append(out[key], f.id)
	}
	for k := range out {
		slices.Sort(out[k])
		slices.Reverse(out[k])
	}
	return out, resp, nil
}

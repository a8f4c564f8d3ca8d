package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples is a scrape.
type Samples []Sample

// ParseMetrics reads the Prometheus text exposition format (enough of it
// for client_golang's output: no timestamps, no escaped quotes in labels
// that matter here).
func ParseMetrics(text string) Samples {
	var out Samples
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var s Sample
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.Name = line[:i]
			s.Labels = parseLabels(line[i+1 : j])
			rest = strings.TrimSpace(line[j+1:])
		} else {
			name, value, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			s.Name, rest = name, strings.TrimSpace(value)
		}
		if f := strings.Fields(rest); len(f) > 0 {
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			s.Value = v
			out = append(out, s)
		}
	}
	return out
}

func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || len(rest) < 2 || rest[0] != '"' {
			break
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			break
		}
		m[strings.TrimSpace(k)] = rest[1 : end+1]
		s = strings.TrimPrefix(strings.TrimSpace(rest[end+2:]), ",")
	}
	return m
}

// Get returns the value of the first sample named name whose labels
// include every pair given (k1, v1, k2, v2...); ok false when none.
func (ss Samples) Get(name string, labels ...string) (float64, bool) {
	for _, s := range ss {
		if s.Name == name && s.has(labels) {
			return s.Value, true
		}
	}
	return 0, false
}

// Sum adds the values of the samples named name with those labels.
func (ss Samples) Sum(name string, labels ...string) float64 {
	t := 0.0
	for _, s := range ss {
		if s.Name == name && s.has(labels) {
			t += s.Value
		}
	}
	return t
}

// Find returns the samples whose name satisfies match.
func (ss Samples) Find(match func(string) bool) Samples {
	var out Samples
	for _, s := range ss {
		if match(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

func (s Sample) has(labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if s.Labels[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}

// Scrape fetches and parses a /metrics endpoint.
func Scrape(ctx context.Context, hc *http.Client, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return ParseMetrics(string(b)), nil
}

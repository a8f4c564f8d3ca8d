package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// metric is one metric mautic-sync exports.
type metric struct {
	histogram bool
	labels    []string
}

// metrics are the names mautic-sync exports (fixed; see the top-level
// README). PromQL in the alerts and the dashboard may use only these.
var metrics = map[string]metric{
	"mautic_sync_events_total":                       {labels: []string{"type", "outcome"}},
	"mautic_sync_dead_letters_total":                 {labels: []string{"reason"}},
	"mautic_sync_mautic_calls_total":                 {labels: []string{"endpoint", "status"}},
	"mautic_sync_mautic_call_duration_seconds":       {histogram: true, labels: []string{"endpoint"}},
	"mautic_sync_batch_items":                        {histogram: true, labels: []string{"endpoint"}},
	"mautic_sync_consumer_pending":                   {},
	"mautic_sync_consumer_ack_pending":               {},
	"mautic_sync_paused":                             {labels: []string{"cause"}},
	"mautic_sync_rate_limit_remaining":               {},
	"mautic_sync_rate_limit_reset_timestamp_seconds": {},
	"mautic_sync_token_renewals_total":               {},
	"mautic_sync_inflight_calls":                     {},
	"mautic_sync_mautic_info":                        {labels: []string{"version"}},
	"mautic_sync_ignored_fields_total":               {labels: []string{"reason"}},
	"mautic_sync_ready":                              {},
}

// labelValues are the values of the labels with a fixed set, per metric.
var labelValues = map[string]map[string][]string{
	"mautic_sync_events_total":       {"outcome": {"applied", "unchanged", "duplicate", "dead_letter"}},
	"mautic_sync_dead_letters_total": {"reason": {"invalid_event", "rejected", "max_deliveries"}},
	"mautic_sync_paused":             {"cause": {"outage", "auth", "rate_limited", "api_disabled", "bad_url"}},
}

// targetLabels are added by Prometheus and the operator to every series.
var targetLabels = []string{"namespace", "pod", "service", "job", "instance", "container", "endpoint"}

// promqlWords are PromQL functions, aggregations and keywords.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		rate irate increase delta idelta deriv predict_linear histogram_quantile absent absent_over_time
		clamp clamp_min clamp_max time vector scalar abs ceil floor round sort sort_desc timestamp changes resets
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time quantile_over_time
		and or unless bool offset inf nan`) {
		promqlWords[w] = true
	}
}

// metricBase maps a series name to the exported metric it belongs to.
func metricBase(name string) (string, bool) {
	if m, ok := metrics[name]; ok {
		return name, !m.histogram // a classic histogram has no series of its bare name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && metrics[base].histogram {
			return base, true
		}
	}
	return "", false
}

var (
	reString     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reSelector   = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}`)
	reMatcher    = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$`)
	reRange      = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGrouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)`)
	reToken      = regexp.MustCompile(`[A-Za-z0-9_:.$]+`)
	reLabelValue = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	rePlainWords = regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`)
)

// checkPromQL checks that expr names only exported metrics, only labels
// those metrics (or the scrape) have, and only known values of the labels
// with a fixed set. It returns the metrics and the labels available.
// It is a careful tokenizer, not a parser: enough for the expressions
// written here, and it refuses what it does not understand.
func checkPromQL(expr string) (used []string, labelSet map[string]bool, err error) {
	if m := reLabelValue.FindStringSubmatch(expr); m != nil {
		used, labelSet, err = checkPromQL(m[1])
		if err == nil && !labelSet[m[2]] {
			err = fmt.Errorf("label_values of label %q, which %v do not have", m[2], used)
		}
		return used, labelSet, err
	}
	if strings.TrimSpace(expr) == "" {
		return nil, nil, fmt.Errorf("empty expression")
	}
	var errs []string
	fail := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }

	// Hide string contents (they may hold braces or parentheses) while the
	// structure is taken apart, keeping their positions.
	var literals []string
	hidden := reString.ReplaceAllStringFunc(expr, func(s string) string {
		literals = append(literals, s)
		return fmt.Sprintf(`"%d"`, len(literals)-1)
	})
	unhide := func(s string) string {
		return regexp.MustCompile(`"(\d+)"`).ReplaceAllStringFunc(s, func(q string) string {
			var i int
			fmt.Sscanf(q, `"%d"`, &i)
			return literals[i]
		})
	}

	type matcher struct{ metric, label, op, value string }
	var matchers []matcher
	s := reSelector.ReplaceAllStringFunc(hidden, func(sel string) string {
		m := reSelector.FindStringSubmatch(sel)
		for _, part := range strings.Split(m[2], ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			mm := reMatcher.FindStringSubmatch(unhide(part))
			if mm == nil {
				fail("cannot read matcher %q", unhide(part))
				continue
			}
			matchers = append(matchers, matcher{m[1], mm[1], mm[2], mm[3]})
		}
		return " " + m[1] + " "
	})
	s = reRange.ReplaceAllString(s, " ")
	var grouping []string
	s = reGrouping.ReplaceAllStringFunc(s, func(g string) string {
		m := reGrouping.FindStringSubmatch(g)
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				grouping = append(grouping, l)
			}
		}
		return " "
	})
	s = reString.ReplaceAllString(s, " ")

	labelSet = map[string]bool{}
	for _, l := range targetLabels {
		labelSet[l] = true
	}
	for _, tok := range reToken.FindAllString(s, -1) {
		switch {
		case tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.':
			// a number
		case promqlWords[tok]:
		case strings.HasPrefix(tok, "$"):
			fail("template variable %s outside a selector or range", tok)
		default:
			base, ok := metricBase(tok)
			if !ok {
				fail("%s is not a metric mautic-sync exports (nor a PromQL word)", tok)
				continue
			}
			used = append(used, tok)
			for _, l := range metrics[base].labels {
				labelSet[l] = true
			}
			if metrics[base].histogram && strings.HasSuffix(tok, "_bucket") {
				labelSet["le"] = true
			}
		}
	}
	if len(used) == 0 && len(errs) == 0 {
		fail("names no metric")
	}
	for _, l := range grouping {
		if !labelSet[l] {
			fail("groups by %q, a label none of %v has", l, used)
		}
	}
	for _, m := range matchers {
		if m.metric == "" {
			fail("selector without a metric name")
			continue
		}
		base, ok := metricBase(m.metric)
		if !ok {
			continue // reported above
		}
		if !slices.Contains(metrics[base].labels, m.label) && !slices.Contains(targetLabels, m.label) &&
			(m.label != "le" || !strings.HasSuffix(m.metric, "_bucket")) {
			fail("%s has no label %q", m.metric, m.label)
			continue
		}
		known, fixed := labelValues[base][m.label]
		if !fixed || strings.Contains(m.value, "$") {
			continue
		}
		values := []string{m.value}
		if m.op == "=~" || m.op == "!~" {
			if !rePlainWords.MatchString(m.value) {
				fail("%s{%s%s%q}: use plain alternatives a|b for a label with fixed values", m.metric, m.label, m.op, m.value)
				continue
			}
			values = strings.Split(m.value, "|")
		}
		for _, v := range values {
			if !slices.Contains(known, v) {
				fail("%s{%s=%q}: %q is not one of %v", m.metric, m.label, m.value, v, known)
			}
		}
	}
	if len(errs) > 0 {
		return used, labelSet, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return used, labelSet, nil
}

// TestCheckPromQL makes sure the checker refuses what it must.
func TestCheckPromQL(t *testing.T) {
	good := []string{
		`sum by (namespace, reason) (increase(mautic_sync_dead_letters_total[15m])) > 0`,
		`histogram_quantile(0.95, sum by (endpoint, le) (rate(mautic_sync_mautic_call_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))`,
		`max by (cause) (mautic_sync_paused{cause=~"auth|api_disabled"}) > 0`,
		`clamp_min(max(mautic_sync_rate_limit_reset_timestamp_seconds) - time(), 0)`,
		`label_values(mautic_sync_ready{namespace=~"$namespace"}, pod)`,
	}
	for _, e := range good {
		if _, _, err := checkPromQL(e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	bad := []string{
		`up == 0`,
		`rate(mautic_sync_events[5m])`,
		`mautic_sync_batch_items > 3`,
		`sum by (cause) (mautic_sync_events_total)`,
		`mautic_sync_paused{cause="ratelimited"}`,
		`mautic_sync_events_total{outcome=~"applied|dead_letters"}`,
		`mautic_sync_ready{reason="x"}`,
		`rate(mautic_sync_events_total[$__rate_interval]) + $oops`,
		`label_values(mautic_sync_ready, cause)`,
		``,
	}
	for _, e := range bad {
		if _, _, err := checkPromQL(e); err == nil {
			t.Errorf("%q passed the PromQL check", e)
		}
	}
}

// promDuration parses a Prometheus duration as used here (s, m, h, d).
func promDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		v, err := time.ParseDuration(d + "h")
		return v * 24, err
	}
	return time.ParseDuration(s)
}

func TestServiceMonitor(t *testing.T) {
	forEachCase(t, func(t *testing.T, r *rendered) {
		if !r.has("servicemonitor") {
			if len(r.serviceMonitors) != 0 {
				t.Error("a ServiceMonitor is rendered without the servicemonitor component")
			}
			return
		}
		if len(r.serviceMonitors) != 1 || len(r.services) != 1 {
			t.Fatalf("want one ServiceMonitor and one Service, have %d and %d", len(r.serviceMonitors), len(r.services))
		}
		sm, svc := r.serviceMonitors[0], r.services[0]
		if !selects(t, &sm.Spec.Selector, svc.Labels) {
			t.Error("the ServiceMonitor does not select the Service")
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("want one endpoint, have %d", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != svc.Spec.Ports[0].Name {
			t.Errorf("endpoint port %q is not the Service's port %q", ep.Port, svc.Spec.Ports[0].Name)
		}
		if ep.Path != "" && ep.Path != "/metrics" {
			t.Errorf("endpoint path %q, want /metrics", ep.Path)
		}
		interval, err1 := promDuration(ep.Interval)
		timeout, err2 := promDuration(ep.ScrapeTimeout)
		if err1 != nil || err2 != nil || timeout > interval {
			t.Errorf("interval %q and scrapeTimeout %q: both durations, timeout at most the interval", ep.Interval, ep.ScrapeTimeout)
		}
	})
}

// TestAlertRules: the four alerts the service needs exist, and every
// expression names only exported metrics, labels and values.
func TestAlertRules(t *testing.T) {
	required := map[string]string{
		"MauticSyncBacklogGrowing": "mautic_sync_consumer_pending",
		"MauticSyncDeadLetters":    "mautic_sync_dead_letters_total",
		"MauticSyncPausedTooLong":  "mautic_sync_paused",
		"MauticSyncAuthFault":      "mautic_sync_paused",
	}
	reLabelRef := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	forEachCase(t, func(t *testing.T, r *rendered) {
		if !r.has("prometheusrule") {
			if len(r.prometheusRules) != 0 {
				t.Error("a PrometheusRule is rendered without the prometheusrule component")
			}
			return
		}
		if len(r.prometheusRules) != 1 {
			t.Fatalf("want one PrometheusRule, have %d", len(r.prometheusRules))
		}
		alerts := map[string]alertRule{}
		for _, g := range r.prometheusRules[0].Spec.Groups {
			if g.Name == "" || len(g.Rules) == 0 {
				t.Errorf("group %q is unnamed or empty", g.Name)
			}
			for _, rule := range g.Rules {
				name := rule.Alert + rule.Record
				if (rule.Alert == "") == (rule.Record == "") {
					t.Errorf("rule %q must be either an alert or a recording rule", name)
				}
				if _, dup := alerts[name]; dup {
					t.Errorf("alert %s is defined twice", name)
				}
				alerts[name] = rule
				used, labelSet, err := checkPromQL(rule.Expr)
				if err != nil {
					t.Errorf("%s: %v\n%s", name, err, rule.Expr)
				}
				if rule.For != "" {
					if _, err := promDuration(rule.For); err != nil {
						t.Errorf("%s: for %q: %v", name, rule.For, err)
					}
				}
				if rule.Alert == "" {
					continue
				}
				if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("%s: severity %q, want warning or critical", name, s)
				}
				if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
					t.Errorf("%s needs a summary and a description", name)
				}
				for _, text := range rule.Annotations {
					for _, m := range reLabelRef.FindAllStringSubmatch(text, -1) {
						if !labelSet[m[1]] || !strings.Contains(rule.Expr, m[1]) {
							t.Errorf("%s: an annotation uses $labels.%s, which the expression does not keep", name, m[1])
						}
					}
				}
				if want, ok := required[name]; ok && !slices.ContainsFunc(used, func(u string) bool { return strings.HasPrefix(u, want) }) {
					t.Errorf("%s does not use %s", name, want)
				}
			}
		}
		for name := range required {
			if _, ok := alerts[name]; !ok {
				t.Errorf("alert %s is missing", name)
			}
		}
		if a, ok := alerts["MauticSyncAuthFault"]; ok && !strings.Contains(a.Expr, "auth") {
			t.Error("MauticSyncAuthFault must select the auth cause")
		}
	})
}

// dashboardExprs collects the PromQL of every target and query variable.
func dashboardExprs(t *testing.T, v any, path string, out map[string]string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := path + "." + k
			switch {
			case k == "expr":
				s, ok := child.(string)
				if !ok {
					t.Errorf("%s is not a string", p)
				}
				out[p] = s
			case k == "query" && v["type"] == "query":
				switch q := child.(type) {
				case string:
					out[p] = q
				case map[string]any:
					s, _ := q["query"].(string)
					out[p] = s
				default:
					t.Errorf("%s: a query variable without a query", p)
				}
			default:
				dashboardExprs(t, child, p, out)
			}
		}
	case []any:
		for i, child := range v {
			dashboardExprs(t, child, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// TestGrafanaDashboard: the ConfigMap carries the sidecar label, the JSON
// parses, its PromQL names only exported metrics, and it shows throughput,
// outcomes, backlog, latency and the rate-limit budget.
func TestGrafanaDashboard(t *testing.T) {
	// Client-side `kubectl apply` keeps the whole object in an annotation
	// limited to 256 KiB; leave room for the JSON's escaping.
	const maxDashboard = 160 << 10
	reLegend := regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	forEachCase(t, func(t *testing.T, r *rendered) {
		var dashboards []string
		for _, cm := range r.configMaps {
			if cm.Labels["grafana_dashboard"] == "" {
				continue
			}
			if cm.Labels["grafana_dashboard"] != "1" {
				t.Errorf("ConfigMap %s: grafana_dashboard label %q, want \"1\"", cm.Name, cm.Labels["grafana_dashboard"])
			}
			for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
				dashboards = append(dashboards, cm.Data[k])
				if !strings.HasSuffix(k, ".json") {
					t.Errorf("ConfigMap %s: key %s should end in .json", cm.Name, k)
				}
			}
		}
		if !r.has("grafana-dashboard") {
			if len(dashboards) != 0 {
				t.Error("a dashboard is rendered without the grafana-dashboard component")
			}
			return
		}
		if len(dashboards) != 1 {
			t.Fatalf("want one dashboard, have %d", len(dashboards))
		}
		raw := dashboards[0]
		if len(raw) > maxDashboard {
			t.Errorf("the dashboard has %d bytes; keep it under %d for client-side kubectl apply", len(raw), maxDashboard)
		}
		var dash map[string]any
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&dash); err != nil {
			t.Fatalf("the dashboard JSON does not parse: %v", err)
		}
		if dec.More() {
			t.Fatal("the dashboard has data after its JSON object")
		}
		for _, k := range []string{"title", "uid"} {
			if s, _ := dash[k].(string); s == "" {
				t.Errorf("the dashboard has no %s", k)
			}
		}
		if _, ok := dash["id"]; ok {
			t.Error("the dashboard must not carry a database id")
		}

		// Panels: unique ids, a Prometheus data source chosen by variable.
		var panels struct {
			Panels []struct {
				ID         int            `json:"id"`
				Type       string         `json:"type"`
				Title      string         `json:"title"`
				GridPos    map[string]int `json:"gridPos"`
				Datasource *struct {
					Type string `json:"type"`
					UID  string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Expr         string `json:"expr"`
					LegendFormat string `json:"legendFormat"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal([]byte(raw), &panels); err != nil {
			t.Fatalf("panels: %v", err)
		}
		ids := map[int]bool{}
		for _, p := range panels.Panels {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("panel %q: id %d is zero or not unique", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" || len(p.GridPos) == 0 {
				t.Errorf("panel %d needs a title and a gridPos", p.ID)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: the data source must be the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				_, labelSet, err := checkPromQL(tg.Expr)
				if err != nil {
					continue // reported below with the others
				}
				for _, m := range reLegend.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !labelSet[m[1]] || !strings.Contains(tg.Expr, m[1]) {
						t.Errorf("panel %q: legend {{%s}} is not a label the query keeps", p.Title, m[1])
					}
				}
			}
		}

		exprs := map[string]string{}
		dashboardExprs(t, dash, "$", exprs)
		if len(exprs) == 0 {
			t.Fatal("the dashboard has no query")
		}
		seen := map[string]bool{}
		groupsByOutcome := false
		for _, p := range slices.Sorted(maps.Keys(exprs)) {
			used, _, err := checkPromQL(exprs[p])
			if err != nil {
				t.Errorf("%s: %v\n%s", p, err, exprs[p])
			}
			for _, u := range used {
				base, _ := metricBase(u)
				seen[base] = true
			}
			groupsByOutcome = groupsByOutcome || regexp.MustCompile(`by \([^)]*outcome`).MatchString(exprs[p])
		}
		for what, m := range map[string]string{
			"throughput":        "mautic_sync_events_total",
			"dead letters":      "mautic_sync_dead_letters_total",
			"backlog":           "mautic_sync_consumer_pending",
			"latency":           "mautic_sync_mautic_call_duration_seconds",
			"rate-limit budget": "mautic_sync_rate_limit_remaining",
			"pause causes":      "mautic_sync_paused",
		} {
			if !seen[m] {
				t.Errorf("the dashboard does not show %s (%s)", what, m)
			}
		}
		if !groupsByOutcome {
			t.Error("the dashboard does not show events by outcome")
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// runBenchJSON runs `mautic-sync bench --json` with args and decodes the
// report.
func runBenchJSON(t *testing.T, args ...string) (benchReport, string) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"bench", "--json"}, args...), &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	return rep, out.String()
}

// A tiny backlog on the instant fake: every figure is present and sane,
// and the references are measured and compared.
func TestBenchBacklogReport(t *testing.T) {
	rep, raw := runBenchJSON(t, "--events", "2000", "--infra", "inprocess", "--linger", "20ms")
	if rep.Published != 2000 || rep.Outcomes != 2000 || rep.Extra != 0 || rep.Incomplete {
		t.Fatalf("published %d, outcomes %d, extra %d, incomplete %v", rep.Published, rep.Outcomes, rep.Extra, rep.Incomplete)
	}
	if rep.ByResult["applied"] != 2000 {
		t.Errorf("by outcome %v, want 2000 applied", rep.ByResult)
	}
	if rep.EventsPerS <= 0 || rep.Seconds <= 0 {
		t.Errorf("events/s %v over %v s", rep.EventsPerS, rep.Seconds)
	}
	m := rep.Mautic
	if m.Calls < 10 || m.CallsPerEvent <= 0 || m.CallsPerEvent > 1 {
		t.Errorf("%d calls, %v per event", m.Calls, m.CallsPerEvent)
	}
	if m.ItemsPerBatchCall < 2 || m.ItemsPerBatchCall > 200 {
		t.Errorf("items per batch call %v", m.ItemsPerBatchCall)
	}
	if e := m.ByEndpoint["contacts/batch/new"]; e.Calls < 10 || e.MeanItems <= 1 {
		t.Errorf("batch/new %+v", e)
	}
	if m.Status429 != 0 {
		t.Errorf("%d 429s without a rate limit", m.Status429)
	}
	l := rep.LatencyMs
	if l.Count != 2000 || l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 {
		t.Errorf("latency %+v", l)
	}
	if rep.CPU.ServiceS <= 0 || rep.CPU.ServicePer10k <= 0 || rep.CPU.AllocPerEvent <= 0 {
		t.Errorf("cpu %+v", rep.CPU)
	}
	if rep.Memory.PeakRSSMiB <= 0 {
		t.Errorf("memory %+v", rep.Memory)
	}
	if rep.Concurrency.Settled <= 0 || rep.Concurrency.Mode != "adaptive" {
		t.Errorf("concurrency %+v", rep.Concurrency)
	}
	if rep.Refs.RawAckEventsPerS <= 0 || rep.Refs.FloorEventsPerS <= 0 {
		t.Errorf("references %+v", rep.Refs)
	}
	for _, k := range []string{"vs_raw_ack", "vs_floor"} {
		if v, ok := rep.Ratios[k]; !ok || v <= 0 {
			t.Errorf("ratio %s = %v, %v", k, v, ok)
		}
	}
	if _, ok := rep.Ratios["vs_mautic_ceiling"]; ok || rep.Refs.Ceiling != 0 {
		t.Errorf("an instant fake has no ceiling, got %v", rep.Refs.Ceiling)
	}
	if rep.Machine.NumCPU <= 0 || rep.Machine.GoVersion == "" || rep.Date == "" {
		t.Errorf("machine %+v date %q", rep.Machine, rep.Date)
	}
	for _, field := range []string{`"events_per_s"`, `"calls_per_event"`, `"items_per_batch_call"`, `"p99"`, `"service_per_10k_events_s"`, `"peak_rss_mib"`, `"status_429"`} {
		if !strings.Contains(raw, field) {
			t.Errorf("JSON report lacks %s", field)
		}
	}
}

// Rate mode against a fake with latency and a rate limit, with the
// infrastructure in its helper process: the Mautic ceiling is computed and
// the helper's CPU and memory are reported apart.
func TestBenchRateModeWithCeiling(t *testing.T) {
	rep, _ := runBenchJSON(t, "--mode", "rate", "--rate", "300", "--duration", "1500ms",
		"--call-latency", "10ms", "--item-latency", "100us", "--rate-limit", "1000", "--rate-window", "10s",
		"--concurrency", "2", "--linger", "20ms", "--mix", "upsert=80,segment.add=10,points.add=10",
		"--contacts", "200", "--refs", "", "--infra", "process")
	if rep.Outcomes != 450 || rep.Published != 450 {
		t.Fatalf("published %d, outcomes %d (%v)", rep.Published, rep.Outcomes, rep.ByResult)
	}
	if rep.Concurrency.Mode != "fixed" || rep.Concurrency.Settled != 2 {
		t.Errorf("concurrency %+v", rep.Concurrency)
	}
	if rep.Refs.CeilingLatencyBound <= 0 || rep.Refs.CeilingRateBound <= 0 || rep.Refs.Ceiling <= 0 {
		t.Errorf("ceiling %+v", rep.Refs)
	}
	if v := rep.Ratios["vs_mautic_ceiling"]; v <= 0 {
		t.Errorf("ratio to the ceiling %v", v)
	}
	if rep.CPU.InfraS <= 0 || rep.Memory.InfraPeakRSSMiB <= 0 {
		t.Errorf("the helper process's CPU %v and memory %v", rep.CPU.InfraS, rep.Memory.InfraPeakRSSMiB)
	}
	if rep.LatencyType["points.add"].Count == 0 || rep.Mautic.ByEndpoint["contacts/points"].Calls == 0 {
		t.Errorf("no points events measured: %+v", rep.LatencyType)
	}
	if rep.Mautic.Windows < 1 || rep.Mautic.Status429 != 0 {
		t.Errorf("rate windows %v, 429s %d", rep.Mautic.Windows, rep.Mautic.Status429)
	}
	if rep.Mautic.CallsPerEvent > 1 {
		t.Errorf("%v calls per event", rep.Mautic.CallsPerEvent)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mix", "upsert=1,bogus=2"},
		{"--mode", "rate"},
		{"--mode", "sideways"},
		{"--infra", "cloud"},
		{"--refs", "raw,other"},
		{"--events", "0"},
		{"extra"},
		{"--replicas", "0"},
		{"--replicas", "1,x"},
		{"--replicas", "3", "--partitions", "2"},
		{"--partitions", "4"},
		{"--replicas", "1,2", "--cpuprofile", "cpu.out"},
	} {
		var out, errOut syncBuffer
		if code := run(context.Background(), append([]string{"bench"}, args...), &out, &errOut); code != exitConfig {
			t.Errorf("bench %v: exit %d, want %d (%s)", args, code, exitConfig, errOut.String())
		}
	}
	var out, errOut syncBuffer
	if code := run(context.Background(), []string{"bench", "-h"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "--mode") && !strings.Contains(errOut.String(), "-mode") {
		t.Errorf("bench -h: exit %d\n%s", code, errOut.String())
	}
}

// Two replicas on a small backlog, the infrastructure in process: every
// event has exactly one outcome, both replicas settled some, and the
// per-replica figures add up. The fake's latency and a small window
// (--max-ack-pending) keep the first replica from taking the whole
// backlog before the other has its partition.
func TestBenchReplicas(t *testing.T) {
	t.Setenv("PARTITION_TAKEOVER", "2s")
	rep, _ := runBenchJSON(t, "--replicas", "2", "--events", "1000", "--infra", "inprocess", "--refs", "",
		"--call-latency", "20ms", "--batch", "20", "--linger", "10ms", "--concurrency", "1", "--max-ack-pending", "100")
	if rep.Published != 1000 || rep.Outcomes != 1000 || rep.Extra != 0 || rep.Incomplete {
		t.Fatalf("published %d, outcomes %d, extra %d, incomplete %v (%s)", rep.Published, rep.Outcomes, rep.Extra, rep.Incomplete, rep.Note)
	}
	if rep.ByResult["applied"] != 1000 {
		t.Errorf("by outcome %v, want 1000 applied", rep.ByResult)
	}
	s := rep.Settings
	if s.Replicas != 2 || s.Partitions != 2 || s.PartitionMode != "elastic" {
		t.Errorf("settings %+v", s)
	}
	if len(rep.Replicas) != 2 {
		t.Fatalf("%d replicas reported: %+v", len(rep.Replicas), rep.Replicas)
	}
	var sum int64
	for _, r := range rep.Replicas {
		if r.Outcomes == 0 {
			t.Errorf("replica %d settled no event: %+v", r.Index, rep.Replicas)
		}
		if r.Settled != 1 || r.PartitionsWanted != 1 {
			t.Errorf("replica %d: %+v", r.Index, r)
		}
		sum += r.Outcomes
	}
	if sum != 1000 {
		t.Errorf("the replicas' outcomes add up to %d", sum)
	}
	if rep.Concurrency.Settled != 2 || rep.EventsPerS <= 0 {
		t.Errorf("concurrency %+v, %v events/s", rep.Concurrency, rep.EventsPerS)
	}
	if rep.Refs.CeilingLatencyBound <= 0 {
		t.Errorf("ceiling %+v", rep.Refs)
	}
}

// --replicas with a list runs the scenario once per count, on the same
// partitions (their least common multiple), and sums the runs up.
func TestBenchReplicaSweep(t *testing.T) {
	t.Setenv("PARTITION_TAKEOVER", "2s")
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"bench", "--json", "--replicas", "1,2", "--events", "300", "--infra", "inprocess", "--refs", "",
		"--batch", "20", "--linger", "10ms", "--call-latency", "5ms", "--concurrency", "1"}
	if code := run(ctx, args, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	var sw sweepReport
	if err := json.Unmarshal([]byte(out.String()), &sw); err != nil {
		t.Fatalf("sweep is not JSON: %v\n%s", err, out.String())
	}
	if len(sw.Runs) != 2 || len(sw.Rows) != 2 || sw.Partitions != 2 || sw.Incomplete {
		t.Fatalf("%d runs, %d rows, %d partitions, incomplete %v", len(sw.Runs), len(sw.Rows), sw.Partitions, sw.Incomplete)
	}
	for i, want := range []int{1, 2} {
		r, row := sw.Runs[i], sw.Rows[i]
		if r.Settings.Replicas != want || r.Settings.Partitions != 2 || len(r.Replicas) != want || row.Replicas != want {
			t.Errorf("run %d: settings %+v, %d replicas reported, row %+v", i, r.Settings, len(r.Replicas), row)
		}
		if r.Outcomes != 300 || r.Extra != 0 {
			t.Errorf("run %d: %d outcomes, %d extra", i, r.Outcomes, r.Extra)
		}
		if row.EventsPerS <= 0 || row.Ceiling <= 0 || row.VsCeiling <= 0 || row.Settled != float64(want) {
			t.Errorf("row %d: %+v", i, row)
		}
	}
	if sw.Rows[0].VsFirst != 1 || sw.Rows[1].VsFirst <= 0 {
		t.Errorf("ratios to the first run: %v, %v", sw.Rows[0].VsFirst, sw.Rows[1].VsFirst)
	}
	// The table form of the same figures.
	var table bytes.Buffer
	sw.print(&table)
	for _, want := range []string{"replicas", "ceiling", "at Mautic"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestDefaultPartitions(t *testing.T) {
	for _, c := range []struct {
		counts []int
		want   int
	}{
		{[]int{3}, 3},
		{[]int{1, 2, 3, 4}, 12},
		{[]int{2, 4}, 4},
		{[]int{1, 2, 3, 4, 5}, 60},
		{[]int{5, 7, 8}, 8}, // lcm 280: the largest count
	} {
		if got := defaultPartitions(c.counts); got != c.want {
			t.Errorf("defaultPartitions(%v) = %d, want %d", c.counts, got, c.want)
		}
	}
}

package bench

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUTime is the user plus system CPU time this process has used
// (getrusage RUSAGE_SELF), all threads included.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MaxRSS is getrusage's ru_maxrss (the process's peak resident set since
// it started) in bytes.
func MaxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}

// statusField reads one "Name:   123 kB" line of /proc/<pid>/status, in
// bytes; -1 when unavailable.
func statusField(pid, name string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		line := s.Text()
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return -1
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return -1
			}
			if len(f) > 1 && f[1] == "kB" {
				n *= 1024
			}
			return n
		}
	}
	return -1
}

// PeakRSS is VmHWM of /proc/self/status (the peak resident set since the
// start or the last ResetPeakRSS) in bytes; -1 when unavailable.
func PeakRSS() int64 { return statusField("self", "VmHWM") }

// RSS is the current resident set (VmRSS) in bytes; -1 when unavailable.
func RSS() int64 { return statusField("self", "VmRSS") }

// ResetPeakRSS resets VmHWM to the current resident set (Linux 4.0+,
// /proc/self/clear_refs "5"). It reports whether it could.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// CPUModel is the "model name" of /proc/cpuinfo, "" when unknown.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// clockTick is USER_HZ, the unit of /proc/stat (100 on Linux everywhere
// that matters).
const clockTick = 10 * time.Millisecond

// MachineCPU reads the first line of /proc/stat: the CPU time all
// processors spent busy (user, nice, system, irq, softirq, steal) and in
// total since boot. ok is false when it cannot be read.
func MachineCPU() (busy, total time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [10]int64
	for i := 1; i < len(f) && i <= 10; i++ {
		v[i-1], _ = strconv.ParseInt(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user.
	busyT := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	totalT := busyT + v[3] + v[4]
	return time.Duration(busyT) * clockTick, time.Duration(totalT) * clockTick, true
}

// LoadAverage is the 1-minute load average, -1 when unknown.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

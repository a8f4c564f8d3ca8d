package worker_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// reliabilitySuites are the test files of issue #7 (fault, bad input,
// fuzz, leak and security tests): every test in them must be named in
// docs/reliability.md, and every name there must be a real test.
var reliabilitySuites = []string{
	"worker/fault_test.go", "worker/badinput_test.go", "worker/fuzz_test.go", "worker/leak_test.go",
	"mautic/fuzz_test.go", "mautic/ratelimit_bogus_test.go",
	"config/security_test.go", "queue/auth_test.go", "cmd/mautic-sync/secrets_test.go",
	"worker/lease_test.go", "queue/partition/fence_test.go",
}

var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]*)\(`)

// TestReliabilityDocNamesRealTests keeps docs/reliability.md's fault table
// and the tests one to one: each row's test (last column) exists as a func
// somewhere in the repository, no test is named twice, and each test of
// the reliability suites has its row.
func TestReliabilityDocNamesRealTests(t *testing.T) {
	root := ".."
	doc, err := os.ReadFile(filepath.Join(root, "docs", "reliability.md"))
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	cell := regexp.MustCompile("^`((?:Test|Fuzz)[A-Za-z0-9_]*)`$")
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "|") || !strings.HasSuffix(strings.TrimSpace(line), "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		last := strings.TrimSpace(cells[len(cells)-1])
		if m := cell.FindStringSubmatch(last); m != nil {
			named = append(named, m[1])
		}
	}
	if len(named) < 20 {
		t.Fatalf("found %d test names in the fault table, want every fault's", len(named))
	}

	all := map[string]string{} // func name -> file
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
			all[m[1]] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range named {
		if seen[n] {
			t.Errorf("%s is named by two rows", n)
		}
		seen[n] = true
		if _, ok := all[n]; !ok {
			t.Errorf("docs/reliability.md names %s, which is no test func in the repository", n)
		}
	}
	for name, file := range all {
		if slices.Contains(reliabilitySuites, file) && !seen[name] && name != "TestReliabilityDocNamesRealTests" {
			t.Errorf("%s (%s) has no row in docs/reliability.md", name, file)
		}
	}
}

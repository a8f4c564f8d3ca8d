package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func readDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	body        []instruction
}

func stages(t *testing.T, ins []instruction) []stage {
	t.Helper()
	var out []stage
	for _, in := range ins {
		if in.cmd != "FROM" {
			if len(out) == 0 {
				if in.cmd == "ARG" {
					continue
				}
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			out[len(out)-1].body = append(out[len(out)-1].body, in)
			continue
		}
		var words []string
		for _, w := range strings.Fields(in.args) {
			if !strings.HasPrefix(w, "--") {
				words = append(words, w)
			}
		}
		s := stage{image: words[0]}
		if len(words) == 3 && strings.EqualFold(words[1], "AS") {
			s.name = words[2]
		}
		out = append(out, s)
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Errorf("%s %s: use the exec (JSON array) form: %v", in.cmd, in.args, err)
	}
	return v
}

// TestDockerfile: a golang:1.26 builder makes a static, trimmed binary; the
// final stage is distroless nonroot, runs as nonroot, exposes HTTP_ADDR's
// port and starts `mautic-sync run`.
func TestDockerfile(t *testing.T) {
	st := stages(t, readDockerfile(t, "../Dockerfile"))
	if len(st) < 2 {
		t.Fatalf("want a multi-stage build, have %d stage(s)", len(st))
	}
	builder, final := st[0], st[len(st)-1]
	if !strings.HasPrefix(builder.image, "golang:1.26") {
		t.Errorf("builder image %q, want golang:1.26", builder.image)
	}
	var build string
	for _, in := range builder.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/mautic-sync"} {
		if !strings.Contains(build, want) {
			t.Errorf("the go build step %q lacks %s", build, want)
		}
	}

	if final.image != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final image %q, want gcr.io/distroless/static-debian12:nonroot", final.image)
	}
	last := map[string]instruction{}
	copied := false
	var exposed []string
	for _, in := range final.body {
		last[in.cmd] = in
		switch in.cmd {
		case "COPY":
			if strings.Contains(in.args, "--from="+builder.name) && strings.HasSuffix(in.args, " /mautic-sync") {
				copied = true
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "RUN":
			t.Errorf("RUN in the final stage: distroless has no shell (%s)", in.args)
		}
	}
	if builder.name == "" || !copied {
		t.Error("the final stage must COPY --from=<named builder> the binary to /mautic-sync")
	}
	if u := last["USER"].args; u != "nonroot" && u != "nonroot:nonroot" && u != "65532" && u != "65532:65532" {
		t.Errorf("USER %q, want nonroot", u)
	}
	r := render(t, cases[0])
	port := strconv.Itoa(int(r.httpPort(t)))
	if !slices.Contains(exposed, port) && !slices.Contains(exposed, port+"/tcp") {
		t.Errorf("EXPOSE %v does not include %s (HTTP_ADDR)", exposed, port)
	}
	if e := execForm(t, last["ENTRYPOINT"]); !slices.Equal(e, []string{"/mautic-sync"}) {
		t.Errorf("ENTRYPOINT %v, want [\"/mautic-sync\"]", e)
	}
	if c := execForm(t, last["CMD"]); !slices.Equal(c, []string{"run"}) {
		t.Errorf("CMD %v, want [\"run\"]", c)
	}
	// The Deployment relies on that entrypoint: it passes only args.
	if _, c := r.workload(t); len(c.Command) != 0 {
		t.Errorf("the container overrides the entrypoint with %v", c.Command)
	}
}

// TestDockerignore keeps the build context small without dropping what the
// build needs.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	for _, want := range []string{".git", "mautic-sync"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	for _, p := range patterns {
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "config", "mautic", "queue", "worker", "*.go", "**/*.go"} {
			if p == needed {
				t.Errorf(".dockerignore excludes %s, which the build needs", p)
			}
		}
	}
}

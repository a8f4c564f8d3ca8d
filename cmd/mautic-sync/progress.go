package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progressBar draws "[=====>     ]  42/100 redriven, 1 failed" on one
// terminal line, redrawn in place (at most every 50ms, and at the end).
type progressBar struct {
	w            io.Writer
	total        int
	done, failed int
	verb         string
	width        int
	last         time.Time
	now          func() time.Time
}

func newProgressBar(w io.Writer, total int, verb string) *progressBar {
	p := &progressBar{w: w, total: total, verb: verb, width: 30, now: time.Now}
	p.draw()
	return p
}

// Add counts n more items, failed or not, and redraws.
func (p *progressBar) Add(n int, failed bool) {
	p.done += n
	if failed {
		p.failed += n
	}
	if p.done >= p.total || p.now().Sub(p.last) >= 50*time.Millisecond {
		p.draw()
	}
}

// Println prints a line above the bar.
func (p *progressBar) Println(line string) {
	fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	p.draw()
}

// Done draws the final state and ends the line.
func (p *progressBar) Done() {
	p.draw()
	fmt.Fprintln(p.w)
}

func (p *progressBar) draw() {
	p.last = p.now()
	filled := p.width
	if p.total > 0 {
		filled = p.done * p.width / p.total
	}
	bar := strings.Repeat("=", filled)
	if filled < p.width {
		bar += ">" + strings.Repeat(" ", p.width-filled-1)
	}
	ok := p.done - p.failed
	line := fmt.Sprintf("\r[%s] %*d/%d %s", bar, len(fmt.Sprint(p.total)), ok, p.total, p.verb)
	if p.failed > 0 {
		line += fmt.Sprintf(", %d failed", p.failed)
	}
	fmt.Fprint(p.w, line+"\033[K")
}

// Package logs reads the CRI container log files the runtime writes for the kubelet
// (`<RFC3339Nano> <stdout|stderr> <P|F> <text>` lines) and serves them the way `kubectl logs`
// asks: tail, since, limit, timestamps and follow across rotation.
package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Entry is one line of a CRI log file.
type Entry struct {
	Time    time.Time
	Stream  string // stdout or stderr
	Partial bool   // P: the runtime split a long line; the rest follows in the next entries
	Text    []byte
}

// ParseLine parses one CRI log line (without its newline).
func ParseLine(line []byte) (Entry, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Entry{}, fmt.Errorf("log line %q: no timestamp", trunc(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Entry{}, fmt.Errorf("log line %q: timestamp: %w", trunc(line), err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return Entry{}, fmt.Errorf("log line %q: stream must be stdout or stderr", trunc(line))
	}
	tag, text, _ := bytes.Cut(rest, []byte{' '})
	// The tag may carry more ':'-separated fields in the future; the first says partial or full.
	first, _, _ := strings.Cut(string(tag), ":")
	var partial bool
	switch first {
	case "P":
		partial = true
	case "F":
	default:
		return Entry{}, fmt.Errorf("log line %q: tag must be P or F", trunc(line))
	}
	return Entry{Time: t, Stream: string(stream), Partial: partial, Text: text}, nil
}

func trunc(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// Options are the query parameters of /containerLogs that this package handles.
type Options struct {
	Follow     bool
	TailLines  *int64 // last N lines; nil: all
	LimitBytes *int64 // stop after this many bytes; nil: no limit
	Since      time.Time
	Timestamps bool
}

// Line is one logical log line: partial entries joined, stamped with the first entry's time.
type Line struct {
	Time     time.Time
	Stream   string
	Text     []byte
	Complete bool // false only for a partial line cut off at the end of the output
}

// assembler joins partial entries into lines; stdout and stderr are joined apart.
type assembler struct {
	pending map[string]*Line
}

func (a *assembler) add(e Entry) (Line, bool) {
	if a.pending == nil {
		a.pending = map[string]*Line{}
	}
	p := a.pending[e.Stream]
	if p == nil {
		p = &Line{Time: e.Time, Stream: e.Stream}
		a.pending[e.Stream] = p
	}
	p.Text = append(p.Text, e.Text...)
	if e.Partial {
		return Line{}, false
	}
	delete(a.pending, e.Stream)
	p.Complete = true
	return *p, true
}

// flush returns the lines still waiting for their end, oldest first.
func (a *assembler) flush() []Line {
	var out []Line
	for _, p := range a.pending {
		out = append(out, *p)
	}
	a.pending = nil
	if len(out) == 2 && out[1].Time.Before(out[0].Time) {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

// errLimit stops the copy once limitBytes are written.
var errLimit = errors.New("byte limit reached")

// writer renders lines to the client and enforces the byte limit.
type writer struct {
	w          io.Writer
	timestamps bool
	since      time.Time
	left       int64 // -1: unlimited
	flush      func()
}

func (w *writer) line(l Line) error {
	if !w.since.IsZero() && l.Time.Before(w.since) {
		return nil
	}
	var b []byte
	if w.timestamps {
		b = append(b, l.Time.Format(time.RFC3339Nano)...)
		b = append(b, ' ')
	}
	b = append(b, l.Text...)
	if l.Complete {
		b = append(b, '\n')
	}
	if w.left >= 0 && int64(len(b)) >= w.left {
		_, err := w.w.Write(b[:w.left])
		w.left = 0
		if err != nil {
			return err
		}
		return errLimit
	}
	if w.left >= 0 {
		w.left -= int64(len(b))
	}
	_, err := w.w.Write(b)
	return err
}

// Follow controls how a followed log ends and how often it is polled.
type Follow struct {
	// Running reports whether the container still runs; following stops at the end of the file
	// once it does not. Nil: follow until ctx ends.
	Running func() bool
	// Poll is how often the file is checked for new lines and rotation. Default 200ms.
	Poll time.Duration
	// Flush is called after each batch of lines (an http.Flusher's Flush).
	Flush func()
}

// Copy writes the log at path to w as o asks. With o.Follow it keeps reading new lines, and when
// the file is rotated (renamed away and a new one created at path) it finishes the old file and
// continues with the new one.
func Copy(ctx context.Context, path string, o Options, w io.Writer, f Follow) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open log %s: %w", path, err)
	}
	defer func() { file.Close() }()
	out := &writer{w: w, timestamps: o.Timestamps, since: o.Since, left: -1, flush: f.Flush}
	if out.flush == nil {
		out.flush = func() {}
	}
	if o.LimitBytes != nil {
		out.left = *o.LimitBytes
		if out.left <= 0 {
			return nil
		}
	}
	err = copyLog(ctx, &file, path, o, out, f)
	if errors.Is(err, errLimit) {
		out.flush()
		return nil
	}
	return err
}

func copyLog(ctx context.Context, fp **os.File, path string, o Options, out *writer, f Follow) error {
	var asm assembler
	r := bufio.NewReaderSize(*fp, 64<<10)
	var carry []byte // a line read up to EOF before its newline arrived

	// readAvailable parses every complete line now in the file, handing each finished logical
	// line to emit.
	readAvailable := func(emit func(Line) error) error {
		for {
			chunk, err := r.ReadBytes('\n')
			if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
				line := append(carry, chunk[:len(chunk)-1]...)
				carry = nil
				if e, perr := ParseLine(line); perr == nil {
					if l, ok := asm.add(e); ok {
						if err := emit(l); err != nil {
							return err
						}
					}
				}
				// Unparseable lines (a torn write, foreign text) are skipped, as upstream does.
				continue
			}
			carry = append(carry, chunk...)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read log %s: %w", path, err)
			}
		}
	}

	if o.TailLines != nil {
		n := int(*o.TailLines)
		var ring []Line
		if n > 0 {
			ring = make([]Line, 0, min(n, 4096))
		}
		err := readAvailable(func(l Line) error {
			if n <= 0 {
				return nil
			}
			if len(ring) == n {
				copy(ring, ring[1:])
				ring = ring[:n-1]
			}
			ring = append(ring, l)
			return nil
		})
		if err != nil {
			return err
		}
		for _, l := range ring {
			if err := out.line(l); err != nil {
				return err
			}
		}
	} else if err := readAvailable(out.line); err != nil {
		return err
	}
	out.flush()
	if !o.Follow {
		return flushPending(&asm, out)
	}

	poll := f.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// Decide about stopping before reading, so lines written just before the container
		// exited are still read below.
		stopping := f.Running != nil && !f.Running()
		if err := readAvailable(out.line); err != nil {
			return err
		}
		if rotated(*fp, path) {
			// The runtime reopens its log at path; the old file is complete once renamed, so
			// read its tail and switch.
			if err := readAvailable(out.line); err != nil {
				return err
			}
			nf, err := os.Open(path)
			if err == nil {
				(*fp).Close()
				*fp = nf // the caller closes whichever file is open last
				r.Reset(nf)
				carry = nil
				if err := readAvailable(out.line); err != nil {
					return err
				}
			}
		} else if truncated(*fp) {
			if _, err := (*fp).Seek(0, io.SeekStart); err == nil {
				r.Reset(*fp)
				carry = nil
			}
		}
		out.flush()
		if stopping {
			return flushPending(&asm, out)
		}
	}
}

func flushPending(asm *assembler, out *writer) error {
	for _, l := range asm.flush() {
		if err := out.line(l); err != nil {
			return err
		}
	}
	out.flush()
	return nil
}

// rotated says whether path now names another file than the open one.
func rotated(f *os.File, path string) bool {
	cur, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Stat(path)
	if err != nil {
		return false // renamed away and not yet recreated: keep reading the old one
	}
	return !os.SameFile(cur, now)
}

// truncated says whether the open file shrank below the read position (copy-truncate rotation).
func truncated(f *os.File) bool {
	st, err := f.Stat()
	if err != nil {
		return false
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return false
	}
	return st.Size() < pos
}

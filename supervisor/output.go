package supervisor

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// maxLine bounds one logged line. A longer one is logged in pieces, never dropped, so HAProxy can
// never block on a pipe that nobody drains any more.
const maxLine = 16 << 10

// copyLines puts HAProxy's output into hapair's log, one record per line, prefixed "haproxy: ",
// at the level HAProxy's own tag gives ([ALERT] error, [WARNING] warning, the rest info). It also
// keeps the last lines in ring, so that a failed reload can quote HAProxy. It returns at EOF, once
// the master and every worker holding the pipe are gone.
func copyLines(r io.Reader, log *slog.Logger, ring *lineRing) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		b, err := br.ReadSlice('\n')
		if line := strings.TrimRight(string(b), "\r\n"); line != "" {
			ring.add(line)
			log.Log(context.Background(), levelOf(line), "haproxy: "+line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func levelOf(line string) slog.Level {
	switch {
	case strings.HasPrefix(line, "[ALERT]"), strings.HasPrefix(line, "[EMERG]"):
		return slog.LevelError
	case strings.HasPrefix(line, "[WARNING]"):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// lineRing keeps HAProxy's last output lines, numbered.
type lineRing struct {
	mu    sync.Mutex
	next  uint64   // number of the next line
	lines []string // the last ones; lines[i] is number next-len(lines)+i
	max   int
}

func (r *lineRing) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	r.lines = append(r.lines, line)
	if len(r.lines) > r.max {
		// Cloned so the backing array does not grow for ever.
		r.lines = slices.Clone(r.lines[len(r.lines)-r.max:])
	}
}

// mark is the number the next line will get.
func (r *lineRing) mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// since returns the kept lines numbered from mark on that start with prefix.
func (r *lineRing) since(mark uint64, prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.next - uint64(len(r.lines))
	var out []string
	for i, l := range r.lines {
		if first+uint64(i) >= mark && strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

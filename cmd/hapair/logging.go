package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// lineHandler writes one plain line per record: "LEVEL message key=value ...". The message comes
// first and unquoted so that the lines keepalived users grep for read the same
// ("(VI_LOGS) Entering MASTER STATE"); journald adds its own timestamp, so the time is optional.
type lineHandler struct {
	mu        *sync.Mutex
	w         io.Writer
	level     slog.Leveler
	withTime  bool
	preformed string // attributes added with WithAttrs, already formatted
}

func newLineHandler(w io.Writer, level slog.Leveler, withTime bool) *lineHandler {
	return &lineHandler{mu: &sync.Mutex{}, w: w, level: level, withTime: withTime}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.withTime {
		b.WriteString(r.Time.Format("2006-01-02T15:04:05.000Z07:00"))
		b.WriteByte(' ')
	}
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(r.Message)
	b.WriteString(h.preformed)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.preformed)
	for _, a := range attrs {
		writeAttr(&b, a)
	}
	c := *h
	c.preformed = b.String()
	return &c
}

// WithGroup is not used by hapair; attributes stay flat.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	v := a.Value.Resolve()
	var s string
	switch v.Kind() {
	case slog.KindDuration:
		s = v.Duration().Round(time.Microsecond).String()
	default:
		s = v.String()
	}
	if s == "" || strings.ContainsAny(s, " \"=") {
		s = fmt.Sprintf("%q", s)
	}
	b.WriteByte(' ')
	b.WriteString(a.Key)
	b.WriteByte('=')
	b.WriteString(s)
}

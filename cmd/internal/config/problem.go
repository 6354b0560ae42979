package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong (or, as a warning, doubtful) in a configuration file.
type Problem struct {
	File string // as given to Load or Parse
	Line int    // 1-based; 0 when no line applies (a missing file, a whole-file property)
	Key  string // key path such as "vrrp_instances[0].virtual_router_id"; "" for the document
	Msg  string
}

// String renders the problem the way compilers and `keepalived -t` users expect:
// "hapair.yaml:14: vrrp_instances[0].virtual_router_id: 300 is outside 1..255".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file. Load and Parse return it as their error so that an
// operator sees all of them at once, not one per run.
type Problems []Problem

// Error joins the problems, one per line, in file order.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Strings returns each problem rendered on its own, for callers that print warnings.
func (ps Problems) Strings() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

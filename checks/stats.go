package checks

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// StatsRow is one line of HAProxy's stats CSV (`/stats;csv`, `show stat`), reduced
// to the columns hapair reads.
type StatsRow struct {
	Proxy   string // pxname
	Service string // svname: "FRONTEND", "BACKEND" or a server name
	Status  string // frontends: OPEN, STOP, PAUSED, FULL; backends and servers: UP, DOWN, ...
	// Active is the act column: on a BACKEND row the number of active servers that
	// are up, on a server row 1 for an active server whether up or not; -1 if empty
	// (frontends).
	Active int
}

// Stats is a parsed stats CSV.
type Stats struct {
	Rows []StatsRow
}

// Find returns the row of proxy and service ("FRONTEND", "BACKEND" or a server).
func (s Stats) Find(proxy, service string) (StatsRow, bool) {
	for _, r := range s.Rows {
		if r.Proxy == proxy && r.Service == service {
			return r, true
		}
	}
	return StatsRow{}, false
}

// statsColumns are the header names hapair needs; columns are found by name, never
// by position, because HAProxy versions add columns.
var statsColumns = []string{"pxname", "svname", "status", "act"}

// ErrNotStatsCSV means the answer is not HAProxy stats CSV at all (an HTML page,
// an error text, nothing).
var ErrNotStatsCSV = errors.New("not HAProxy stats CSV")

// ParseStatsCSV parses HAProxy's stats CSV. The first line must be the header
// ("# pxname,svname,..."), every row must have as many fields as the header, and
// the text must end with a newline (anything else is a truncated answer). It never
// panics, whatever the input.
func ParseStatsCSV(data []byte) (Stats, error) {
	header, rest, found := bytes.Cut(data, []byte("\n"))
	if !bytes.HasPrefix(header, []byte("# ")) || !found {
		return Stats{}, fmt.Errorf("%w: first line %q", ErrNotStatsCSV, shorten(string(header), 60))
	}
	names := strings.Split(strings.TrimRight(string(header[2:]), "\r"), ",")
	col := make(map[string]int, len(names))
	for i, n := range names {
		if _, dup := col[n]; !dup && n != "" {
			col[n] = i
		}
	}
	for _, need := range statsColumns {
		if _, ok := col[need]; !ok {
			return Stats{}, fmt.Errorf("%w: header has no %q column", ErrNotStatsCSV, need)
		}
	}
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		return Stats{}, errors.New("truncated stats CSV: last line has no newline")
	}

	// The reader gets the header line too, so that its line numbers are the text's.
	rd := csv.NewReader(bytes.NewReader(data))
	rd.FieldsPerRecord = len(names)
	rd.ReuseRecord = true
	if _, err := rd.Read(); err != nil {
		return Stats{}, fmt.Errorf("stats CSV header: %w", err)
	}
	var st Stats
	for {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Stats{}, fmt.Errorf("stats CSV: %w", err)
		}
		row := StatsRow{
			Proxy:   rec[col["pxname"]],
			Service: rec[col["svname"]],
			Status:  rec[col["status"]],
			Active:  -1,
		}
		if a := rec[col["act"]]; a != "" {
			n, err := strconv.Atoi(a)
			if err != nil || n < 0 {
				line, _ := rd.FieldPos(0)
				return Stats{}, fmt.Errorf("stats CSV line %d: act %q is not a count", line, shorten(a, 20))
			}
			row.Active = n
		}
		st.Rows = append(st.Rows, row)
	}
	return st, nil
}

// StatsConditions are what the stats CSV must show for the check to pass.
type StatsConditions struct {
	Frontends []string       // each must read OPEN
	Backends  map[string]int // backend -> minimum active servers up (the BACKEND row's act)
}

// Check returns a short summary when every condition holds, or an error naming
// every condition that does not. A backend without servers reads UP, which is
// why servers are counted rather than the backend's status trusted.
func (c StatsConditions) Check(st Stats) (string, error) {
	var ok, bad []string
	for _, fe := range c.Frontends {
		row, found := st.Find(fe, "FRONTEND")
		switch {
		case !found:
			bad = append(bad, fmt.Sprintf("frontend %s not found", fe))
		case row.Status != "OPEN":
			bad = append(bad, fmt.Sprintf("frontend %s is %s", fe, row.Status))
		default:
			ok = append(ok, fmt.Sprintf("frontend %s OPEN", fe))
		}
	}
	backends := make([]string, 0, len(c.Backends))
	for be := range c.Backends {
		backends = append(backends, be)
	}
	sort.Strings(backends)
	for _, be := range backends {
		need := c.Backends[be]
		row, found := st.Find(be, "BACKEND")
		switch {
		case !found:
			bad = append(bad, fmt.Sprintf("backend %s not found", be))
		case row.Active < need:
			bad = append(bad, fmt.Sprintf("backend %s has %d active servers up, need %d", be, max(row.Active, 0), need))
		default:
			ok = append(ok, fmt.Sprintf("backend %s %d up", be, row.Active))
		}
	}
	if len(bad) > 0 {
		return "", errors.New(strings.Join(bad, "; "))
	}
	return strings.Join(ok, ", "), nil
}

// shorten cuts s to n bytes for messages, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

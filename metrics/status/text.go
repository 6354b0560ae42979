package status

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// maxOutput bounds a check's output in the text form; the JSON has it whole.
const maxOutput = 80

// WriteText renders st for people: tables first (what `hapair status` shows),
// then a keepalived-style section whose lines match what operators grep in
// /tmp/keepalived.data (` VRRP Instance = VI_LOGS`, `   State = MASTER`), so
// scripts written for keepalived's SIGUSR1 dump keep working on hapair's.
// Strings from outside (check output, reload errors) are stripped of control
// characters, so a dump cannot carry terminal escapes.
func WriteText(w io.Writer, st Status) error {
	bw := bufio.NewWriter(w)
	writeTables(bw, st)
	bw.WriteString("\n")
	writeKeepalivedStyle(bw, st)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write status text: %w", err)
	}
	return nil
}

func writeTables(w *bufio.Writer, st Status) {
	head := "hapair status"
	if st.RouterID != "" {
		head += " of " + clean(st.RouterID, 0)
	}
	if st.Version != "" {
		head += " (hapair " + clean(st.Version, 0) + ")"
	}
	if !st.GeneratedAt.IsZero() {
		head += " at " + formatTime(st.GeneratedAt)
	}
	fmt.Fprintf(w, "%s\n\n", head)
	if st.Drained {
		w.WriteString("This node is drained (hapair drain): it leaves the VIPs to its peers and serves only as the last resort; hapair undrain ends it.\n\n")
	}
	if c := st.Config; c != nil {
		fmt.Fprintf(w, "Configuration %s loaded at %s; last reload: %s\n\n",
			clean(c.File, 0), formatTime(c.LoadedAt), configReloadText(c.LastReload, maxOutput))
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSTATE\tINTERFACE\tVRID\tVRRP\tPRIORITY\tBASE\tMASTER\tIN STATE\tLAST TRANSITION\tVIPS")
	if len(st.Instances) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, in := range st.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\tv%d\t%d\t%d\t%s\t%s\t%s\t%s\n",
			clean(in.Name, 0), clean(in.State, 0), clean(in.Interface, 0), in.VRID, in.Version,
			in.EffectivePriority, in.BasePriority, orDash(clean(in.MasterAddress, 0)),
			formatDuration(in.InState), transitionText(in.LastTransition), orDash(cleanList(in.VIPs)))
	}
	tw.Flush()
	w.WriteString("\n")

	h := st.HAProxy
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HAPROXY\tUP\tPID\tRESTARTS\tLAST EXIT\tLAST RELOAD\tBACKOFF")
	fmt.Fprintf(tw, "haproxy\t%s\t%s\t%d\t%s\t%s\t%s\n",
		yesNo(h.Up), pidText(h.PID), h.Restarts, exitText(h.LastExit), reloadText(h.LastReload), backoffText(h.Backoff))
	tw.Flush()
	w.WriteString("\n")

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tUP\tLAST\tDURATION\tAT\tOUTPUT")
	if len(st.Checks) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, c := range st.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			clean(c.Name, 0), yesNo(c.Up), okFail(c.LastOK), formatDuration(c.Duration),
			formatTime(c.At), clean(c.Output, maxOutput))
	}
	tw.Flush()
	if st.BGP != nil {
		writeBGPTables(w, st.BGP)
	}
}

// writeKeepalivedStyle writes keepalived 2.x's dump layout: section banners,
// one-space "Key = value" headers and three-space "Key = value" details.
func writeKeepalivedStyle(w *bufio.Writer, st Status) {
	w.WriteString("------< Global definitions >------\n")
	fmt.Fprintf(w, " Router ID = %s\n", clean(st.RouterID, 0))
	if c := st.Config; c != nil {
		fmt.Fprintf(w, " Configuration file = %s\n", clean(c.File, 0))
		fmt.Fprintf(w, " Configuration loaded = %s\n", formatTime(c.LoadedAt))
		fmt.Fprintf(w, " Last configuration reload = %s\n", configReloadText(c.LastReload, 0))
	}
	w.WriteString("------< VRRP Topology >------\n")
	for _, in := range st.Instances {
		fmt.Fprintf(w, " VRRP Instance = %s\n", clean(in.Name, 0))
		// State and master first: `grep -A2 "VRRP Instance"` shows them.
		fmt.Fprintf(w, "   State = %s\n", clean(in.State, 0))
		fmt.Fprintf(w, "   Master router = %s\n", orDash(clean(in.MasterAddress, 0)))
		if in.LastTransition != nil {
			lt := in.LastTransition
			fmt.Fprintf(w, "   Last transition = %d (%s) %s\n", lt.At.Unix(), formatTime(lt.At), transitionText(lt))
		}
		fmt.Fprintf(w, "   Time in state = %s\n", formatDuration(in.InState))
		fmt.Fprintf(w, "   Interface = %s\n", clean(in.Interface, 0))
		fmt.Fprintf(w, "   Virtual Router ID = %d\n", in.VRID)
		fmt.Fprintf(w, "   VRRP Version = %d\n", in.Version)
		fmt.Fprintf(w, "   Priority = %d\n", in.BasePriority)
		fmt.Fprintf(w, "   Effective priority = %d\n", in.EffectivePriority)
		fmt.Fprintf(w, "   Virtual IP (%d):\n", len(in.VIPs))
		for _, v := range in.VIPs {
			fmt.Fprintf(w, "     %s dev %s\n", clean(v, 0), clean(in.Interface, 0))
		}
	}
	h := st.HAProxy
	w.WriteString("------< HAProxy >------\n")
	fmt.Fprintf(w, " HAProxy = %s\n", upDown(h.Up))
	fmt.Fprintf(w, "   PID = %s\n", pidText(h.PID))
	fmt.Fprintf(w, "   Restarts = %d\n", h.Restarts)
	fmt.Fprintf(w, "   Last exit = %s\n", exitText(h.LastExit))
	fmt.Fprintf(w, "   Last reload = %s\n", reloadText(h.LastReload))
	fmt.Fprintf(w, "   Backoff = %s\n", backoffText(h.Backoff))
	w.WriteString("------< Checks >------\n")
	for _, c := range st.Checks {
		fmt.Fprintf(w, " Check = %s\n", clean(c.Name, 0))
		fmt.Fprintf(w, "   Status = %s\n", upDown(c.Up))
		fmt.Fprintf(w, "   Last result = %s\n", okFail(c.LastOK))
		fmt.Fprintf(w, "   Duration = %s\n", formatDuration(c.Duration))
		fmt.Fprintf(w, "   At = %s\n", formatTime(c.At))
		fmt.Fprintf(w, "   Output = %s\n", clean(c.Output, 0))
	}
}

// clean replaces control and other non-printable characters by their Go
// escape and, when max > 0, cuts the result to max runes.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if max > 0 && n >= max {
			b.WriteString("...")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		n++
	}
	return b.String()
}

func cleanList(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s, 0)
	}
	return strings.Join(out, ",")
}

func transitionText(t *Transition) string {
	if t == nil {
		return "-"
	}
	s := clean(t.From, 0) + "->" + clean(t.To, 0)
	if t.Reason != "" {
		s += " (" + clean(t.Reason, 0) + ")"
	}
	return s
}

func reloadText(r *ReloadStatus) string {
	if r == nil {
		return "-"
	}
	s := clean(string(r.Result), 0) + " at " + formatTime(r.At)
	if r.Error != "" {
		s += ": " + clean(r.Error, maxOutput)
	}
	return s
}

func configReloadText(r *ConfigReload, max int) string {
	if r == nil {
		return "none since start"
	}
	s := clean(string(r.Result), 0) + " at " + formatTime(r.At)
	if r.Error != "" {
		s += ": " + clean(r.Error, max)
	}
	return s
}

func exitText(status *int) string {
	if status == nil {
		return "-"
	}
	return strconv.Itoa(*status)
}

func pidText(pid int) string {
	if pid <= 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func backoffText(d Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatDuration(d)
}

// formatDuration rounds for reading: milliseconds below a second, seconds
// below an hour... enough precision to tell a failover from a stale state.
func formatDuration(d Duration) string {
	v := time.Duration(d)
	switch {
	case v <= 0:
		return "0s"
	case v < time.Second:
		return v.Round(100 * time.Microsecond).String()
	case v < time.Minute:
		return v.Round(10 * time.Millisecond).String()
	default:
		return v.Round(time.Second).String()
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func upDown(b bool) string {
	if b {
		return "UP"
	}
	return "DOWN"
}

func okFail(b bool) string {
	if b {
		return "ok"
	}
	return "fail"
}

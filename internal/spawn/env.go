package spawn

import "strings"

// Env returns environ without the variables through which systemd talks to hapair itself
// (NOTIFY_SOCKET, WATCHDOG_*, LISTEN_*: a child that saw them could report readiness or pass the
// watchdog for hapair, or take hapair's sockets), followed by extra, whose variables replace those
// of the same name.
func Env(environ []string, extra ...string) []string {
	override := make(map[string]bool, len(extra))
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		override[name] = true
	}
	out := make([]string, 0, len(environ)+len(extra))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if systemdVariable(name) || override[name] {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

func systemdVariable(name string) bool {
	return name == "NOTIFY_SOCKET" || strings.HasPrefix(name, "WATCHDOG_") || strings.HasPrefix(name, "LISTEN_")
}

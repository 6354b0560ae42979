package main

import (
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends one state line to systemd when it started us with Type=notify. Without
// NOTIFY_SOCKET it does nothing: hapair runs the same outside systemd.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// watchdogEvery is how often to ping systemd's watchdog: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises; 0 when there is no watchdog for this process (no
// NOTIFY_SOCKET to ping it by, no WATCHDOG_USEC, or a WATCHDOG_PID that is another process's).
// Each ping is a wake-up of a process that is otherwise idle between adverts: with no watchdog
// there are none, and the unit's WatchdogSec=10s makes one every 5 s.
func watchdogEvery(getenv func(string) string, pid int) time.Duration {
	if getenv("NOTIFY_SOCKET") == "" {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	usec, err := strconv.ParseUint(getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// Package earlysignals subscribes the signals `hapair run` acts on from package initialization,
// before main, in an image that an in-place upgrade has just executed.
//
// Go's runtime kills a process on a SIGTERM, SIGINT or SIGHUP that no os/signal subscription
// wants. In the image an upgrade's execve starts, the VIPs are attached and HAProxy runs: a
// `systemctl stop` that came between the execve and `hapair run`'s own subscription killed it
// and left the VIPs on the interface for the peer to duplicate. That gap was the runtime's start
// and every package's initialization, 7 ms on an idle machine and more under load. Package
// initialization runs this package as soon as os/signal is ready, ahead of the heavy ones
// (protobuf, Prometheus), and the gap left is the runtime's own start.
package earlysignals

import (
	"os"
	"os/signal"
	"syscall"
)

// UpgradeEnv marks the environment of an image that an in-place upgrade executed.
const UpgradeEnv = "HAPAIR_UPGRADED_FROM"

// Signals are those `hapair run` acts on: reload, stop, dump, upgrade.
var Signals = []os.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2}

// buffer holds the signals caught before `hapair run` reads them; a fifth waits in the runtime.
const buffer = 4

// early is the subscription made at initialization, nil outside an upgraded image or once taken.
var early chan os.Signal

func init() {
	if _, ok := os.LookupEnv(UpgradeEnv); ok {
		early = make(chan os.Signal, buffer)
		signal.Notify(early, Signals...)
	}
}

// Subscribe returns a channel that receives Signals. In an upgraded image it is the one
// subscribed at initialization, with what it caught since, so that nothing is lost between the
// two; otherwise a new subscription. Call it once.
func Subscribe() chan os.Signal {
	if c := early; c != nil {
		early = nil
		return c
	}
	c := make(chan os.Signal, buffer)
	signal.Notify(c, Signals...)
	return c
}

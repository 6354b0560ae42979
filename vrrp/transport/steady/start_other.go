//go:build linux && !amd64

package steady

import "golang.org/x/sys/unix"

// Supported reports whether this architecture has the sender thread.
func Supported() bool { return false }

// startThread is never called: Start returns ErrUnsupported first. It fails like a clone the
// kernel does not have.
func startThread(c, stackTop, entry uintptr) (tid int64) { return -int64(unix.ENOSYS) }

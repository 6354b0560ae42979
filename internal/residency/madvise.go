package residency

import "golang.org/x/sys/unix"

// madvise advises on a mapping of the process's own executable by address: unix.Madvise wants a
// byte slice, and making one from an address outside the Go heap is what vet rightly frowns on.
func madvise(m Mapping, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.Start, m.Len(), uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

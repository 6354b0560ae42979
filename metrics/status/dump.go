package status

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotRegular is returned by WriteDump when the dump path exists and is a
// symbolic link or anything else but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// WriteDump writes st as text (WriteText) to path, mode 0600, the SIGUSR1
// habit of keepalived (/tmp/keepalived.data). The dump usually lives in a
// world-writable directory, so it never writes through what it finds there:
// an existing symlink or non-regular file is refused, and the text goes to a
// new temporary file in the same directory (O_EXCL, so no symlink or hard
// link planted in advance is followed), which then replaces path by rename.
func WriteDump(path string, st Status) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("write dump %s: %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, st); err != nil {
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes 0600 files already; Chmod makes it independent of that.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	// rename(2) replaces the directory entry; it never follows a symlink
	// planted at path between the Lstat above and here.
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write dump %s: %w", path, err)
	}
	committed = true
	return nil
}

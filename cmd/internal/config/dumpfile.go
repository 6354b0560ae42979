package config

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hapair/hapair/cmd/internal/rundir"
	"github.com/hapair/hapair/internal/spawn"
	"github.com/hapair/hapair/supervisor"
)

// validateDumpFile refuses a status.dump_file that is a file hapair or HAProxy reads or owns: the
// SIGUSR1 dump replaces it whole, so pointed at the configuration it destroyed the configuration.
// Paths are compared as written, through symbolic links, and by device and inode (hard links).
func (d *decoder) validateDumpFile(cfg *Config) {
	dump := cfg.Status.DumpFile
	if dump == "" {
		return
	}
	type owned struct{ path, what string }
	var files []owned
	if cfg.File != "" {
		files = append(files, owned{cfg.File, "the configuration file"})
	}
	if cfg.RuntimeDir != "" {
		files = append(files, owned{filepath.Join(cfg.RuntimeDir, rundir.LockFile), "hapair's lock file"})
	}
	if h := cfg.HAProxy; h != nil {
		files = append(files,
			owned{h.Config, "haproxy.config"},
			owned{h.Command, "haproxy.command"},
			owned{filepath.Join(h.RuntimeDir, supervisor.SocketName), "HAProxy's master CLI socket"})
	}
	for i, c := range cfg.Checks {
		if c.Script != nil {
			files = append(files, owned{program(c.Script.Command), "the program of " + index("checks", i) + ".script.command"})
		}
	}
	for i, in := range cfg.Instances {
		for _, n := range []struct{ key, cmd string }{
			{"notify_master", in.Notify.Master}, {"notify_backup", in.Notify.Backup},
			{"notify_fault", in.Notify.Fault}, {"notify_stop", in.Notify.Stop}, {"notify", in.Notify.All},
		} {
			if n.cmd != "" {
				files = append(files, owned{program(n.cmd), "the program of " + index("vrrp_instances", i) + "." + n.key})
			}
		}
	}
	for _, f := range files {
		if f.path != "" && samePath(dump, f.path) {
			d.add(d.lineOf("status.dump_file"), "status.dump_file", "%s is %s: SIGUSR1 would overwrite it with the state dump", dump, f.what)
			return
		}
	}
}

// program returns the file a command line runs, "" when it cannot be told.
func program(command string) string {
	argv, err := spawn.Split(command)
	if err != nil || len(argv) == 0 {
		return ""
	}
	if p, err := exec.LookPath(argv[0]); err == nil {
		return p
	}
	return argv[0]
}

// samePath tells whether a and b name the same file: the same cleaned absolute path, the same
// path once symbolic links are resolved, or the same device and inode.
func samePath(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA != nil || errB != nil {
		return false
	}
	if absA == absB {
		return true
	}
	if ra, rb := resolve(absA), resolve(absB); ra == rb {
		return true
	}
	fa, errA := os.Stat(absA)
	fb, errB := os.Stat(absB)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// resolve follows symbolic links in p; for a file that does not exist yet, in its directory.
func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		return filepath.Join(dir, filepath.Base(p))
	}
	return p
}

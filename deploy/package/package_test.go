// Package deb_test builds hapair's Debian package with build-deb.sh, inspects
// it, installs it into a private dpkg root and runs the installed binary.
package deb_test

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const version = "v0.0.1-test"
const debVersion = "0.0.1+test" // what build-deb.sh makes of version

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// skipOrFail skips, unless CI is set: then the missing piece is a failure.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so not skipping)")
	}
	t.Skip(msg)
}

func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skipOrFail(t, n+" not found")
		}
	}
}

// hapairBinary returns $HAPAIR_BIN if set (a binary built already, e.g. by
// `make build`), or builds ./cmd/hapair the way the Makefile does.
func hapairBinary(t *testing.T, root string) string {
	t.Helper()
	if bin := os.Getenv("HAPAIR_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	mains, _ := filepath.Glob(filepath.Join(root, "cmd", "hapair", "*.go"))
	hasMain := false
	for _, f := range mains {
		b, err := os.ReadFile(f)
		if err == nil && !strings.HasSuffix(f, "_test.go") && bytes.Contains(b, []byte("\nfunc main()")) {
			hasMain = true
		}
	}
	if !hasMain {
		skipOrFail(t, "cmd/hapair has no main yet")
	}
	// The Makefile's own recipe: what `make deb` packages is what is tested.
	bin := filepath.Join(t.TempDir(), "hapair")
	cmd := exec.Command("make", "-s", "build", "BIN="+bin, "VERSION="+version, "COMMIT=test")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return bin
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDebianPackage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Debian packages are built on Linux")
	}
	requireCommands(t, "dpkg-deb", "dpkg", "sh", "make")
	root := repoRoot(t)
	bin := hapairBinary(t, root)
	out := t.TempDir()

	built := run(t, "sh", filepath.Join(root, "deploy", "package", "build-deb.sh"), bin, version, out)
	deb := strings.TrimSpace(built)
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	if want := filepath.Join(out, "hapair_"+debVersion+"_"+arch+".deb"); deb != want {
		t.Fatalf("build-deb.sh printed %q, want %q", deb, want)
	}

	t.Run("control", func(t *testing.T) {
		fields := map[string]string{
			"Package": "hapair", "Version": debVersion, "Architecture": arch,
		}
		for f, want := range fields {
			if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f)); got != want {
				t.Errorf("%s: %q, want %q", f, got, want)
			}
		}
		if deps := run(t, "dpkg-deb", "-f", deb, "Depends"); !strings.Contains(deps, "haproxy") {
			t.Errorf("Depends %q lacks haproxy", deps)
		}
		if cf := strings.TrimSpace(run(t, "dpkg-deb", "-I", deb, "conffiles")); cf != "/etc/hapair/hapair.yaml" {
			t.Errorf("conffiles %q", cf)
		}
		info := run(t, "dpkg-deb", "-I", deb)
		for _, s := range []string{"postinst", "prerm", "postrm", "md5sums"} {
			if !strings.Contains(info, s) {
				t.Errorf("control archive lacks %s:\n%s", s, info)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		// path -> mode as dpkg-deb -c prints it, all owned by root/root
		want := map[string]string{
			"./usr/sbin/hapair":                   "-rwxr-xr-x",
			"./lib/systemd/system/hapair.service": "-rw-r--r--",
			"./etc/hapair/hapair.yaml":            "-rw-------", // holds the VRRP password
			"./usr/share/doc/hapair/copyright":    "-rw-r--r--",
		}
		for _, g := range []struct{ glob, dir string }{
			{"deploy/examples/*.yaml", "./usr/share/hapair/examples/"},
			{"deploy/grafana/*.json", "./usr/share/hapair/grafana/"},
			{"deploy/prometheus/*.yml", "./usr/share/hapair/prometheus/"},
		} {
			files, _ := filepath.Glob(filepath.Join(root, g.glob))
			for _, f := range files {
				want[g.dir+filepath.Base(f)] = "-rw-r--r--"
			}
		}
		got := map[string]string{}
		for line := range strings.Lines(run(t, "dpkg-deb", "-c", deb)) {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			if f[1] != "root/root" {
				t.Errorf("%s owned by %s", f[len(f)-1], f[1])
			}
			got[f[len(f)-1]] = f[0]
		}
		for path, mode := range want {
			if got[path] != mode {
				t.Errorf("%s: mode %q, want %q", path, got[path], mode)
			}
		}
	})

	// The files in the package are the repository's.
	x := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, x)
	for pkgPath, src := range map[string]string{
		"usr/sbin/hapair":                   bin,
		"lib/systemd/system/hapair.service": filepath.Join(root, "deploy/systemd/hapair.service"),
		"etc/hapair/hapair.yaml":            filepath.Join(root, "deploy/examples/loglb01.yaml"),
	} {
		a, err1 := os.ReadFile(filepath.Join(x, pkgPath))
		b, err2 := os.ReadFile(src)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%v, %v)", pkgPath, src, err1, err2)
		}
	}

	// The packaged binary is static: no dynamic loader, no libc mapped into the daemon (the
	// Makefile builds without cgo; docs/performance.md says what that saves).
	t.Run("static binary", func(t *testing.T) {
		f, err := elf.Open(filepath.Join(x, "usr/sbin/hapair"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("usr/sbin/hapair has a program interpreter: dynamically linked (built with cgo?)")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("usr/sbin/hapair needs shared libraries %v", libs)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Skip("systemd-analyze not installed")
		}
		// verify wants the ExecStart binaries to exist: point the unit at the
		// extracted one. Unknown keys are only warnings, so any output fails.
		unit, err := os.ReadFile(filepath.Join(x, "lib/systemd/system/hapair.service"))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "hapair.service")
		unit = bytes.ReplaceAll(unit, []byte("/usr/sbin/hapair"), []byte(filepath.Join(x, "usr/sbin/hapair")))
		if err := os.WriteFile(p, unit, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("install", func(t *testing.T) {
		if os.Geteuid() != 0 {
			skipOrFail(t, "installing into a dpkg root needs root")
		}
		inst := dpkgRoot(t)
		// Dependencies are not installed in the private root; the machine's
		// HAProxy serves `hapair check`.
		run(t, "dpkg", "--root="+inst, "--force-depends", "--install", deb)
		status := run(t, "dpkg", "--root="+inst, "-s", "hapair")
		if !strings.Contains(status, "Status: install ok installed") {
			t.Fatalf("dpkg -s:\n%s", status)
		}
		installedBin := filepath.Join(inst, "usr/sbin/hapair")
		conf := filepath.Join(inst, "etc/hapair/hapair.yaml")
		if st, err := os.Stat(conf); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("installed %s: %v %v", conf, st, err)
		}
		if out := run(t, installedBin, "version"); !strings.Contains(out, version) {
			t.Errorf("hapair version: %q lacks %s", out, version)
		}
		// The example is written for loglb01, whose eth0 this machine need
		// not have; everything else, haproxy -c included, is checked.
		cmd := exec.Command(installedBin, "check", "--skip-interface-check", "--config", conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("installed hapair check of the installed config: %v\n%s", err, out)
		}

		// remove keeps the edited conffile, purge takes it.
		if err := os.WriteFile(conf, []byte("# edited\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "dpkg", "--root="+inst, "--remove", "hapair")
		if _, err := os.Stat(installedBin); !os.IsNotExist(err) {
			t.Errorf("binary left after remove: %v", err)
		}
		if b, err := os.ReadFile(conf); err != nil || string(b) != "# edited\n" {
			t.Errorf("conffile after remove: %q %v", b, err)
		}
		// What dpkg does not know of: a `systemctl enable`'s link (a reinstalled hapair would
		// be enabled again) and the runtime directory systemd keeps across stops.
		wants := filepath.Join(inst, "etc/systemd/system/multi-user.target.wants/hapair.service")
		drained := filepath.Join(inst, "run/hapair/drained")
		for _, d := range []string{filepath.Dir(wants), filepath.Dir(drained)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/lib/systemd/system/hapair.service", wants); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(drained, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "dpkg", "--root="+inst, "--purge", "hapair")
		if _, err := os.Stat(conf); !os.IsNotExist(err) {
			t.Errorf("conffile left after purge: %v", err)
		}
		for _, p := range []string{wants, filepath.Dir(drained)} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s left after purge: %v", p, err)
			}
		}
	})
}

// dpkgRoot makes an empty dpkg installation root: an admin directory, and
// /bin/sh and /bin/rm (the machine's, with their libraries) because dpkg runs
// the maintainer scripts chrooted into the root.
func dpkgRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// /bin/sh and /bin/rm, with their libraries.
	var files, dsts []string
	for _, prog := range []string{"sh", "rm"} {
		path, err := filepath.EvalSymlinks("/bin/" + prog)
		if err != nil {
			t.Fatal(err)
		}
		files, dsts = append(files, path), append(dsts, filepath.Join(root, "bin", prog))
		for _, f := range strings.Fields(run(t, "ldd", path)) {
			if strings.HasPrefix(f, "/") {
				files, dsts = append(files, f), append(dsts, filepath.Join(root, f))
			}
		}
	}
	for i, f := range files {
		dst := dsts[i]
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

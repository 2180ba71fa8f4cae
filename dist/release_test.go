package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// releaseMachines are the ELF machines of the GOARCHes make release builds.
var releaseMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// checkStaticELF reports what is wrong with b as a static Linux executable
// for arch: the machine in its ELF header, an interpreter (PT_INTERP: the
// kernel would need ld.so) or a dynamic section (shared libraries).
func checkStaticELF(b []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer f.Close()
	if want := releaseMachines[arch]; f.Machine != want {
		return fmt.Errorf("ELF machine %v, want %v", f.Machine, want)
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("ELF type %v, want ET_EXEC", f.Type)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return fmt.Errorf("ELF OS ABI %v, want Linux", f.OSABI)
	}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return fmt.Errorf("has an interpreter (PT_INTERP): dynamically linked")
		case elf.PT_DYNAMIC:
			return fmt.Errorf("has a dynamic segment (PT_DYNAMIC): dynamically linked")
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		return fmt.Errorf("has a .dynamic or .interp section: dynamically linked")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// TestRelease runs make release for two architectures, the native one and
// another, and checks the assets: upstream's names, static executables for
// the right machine, the tarball's files, the sums, the manifests of the
// version, and the version in the binaries. The rest of RELEASE_ARCHES
// builds the same way; building them all here would take minutes more.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles flanneld, flannel and flannelctl")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	arches := []string{runtime.GOARCH, other}
	if _, ok := releaseMachines[runtime.GOARCH]; !ok {
		arches = []string{"amd64", "arm64"}
	}
	const version = "v9.9.9-releasetest"
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", repoRoot, "release",
		"RELEASE_ARCHES="+strings.Join(arches, " "), "VERSION="+version, "RELEASE_DIR="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, b)
	}

	// Upstream's names: flanneld-<arch> and flannel-<tag>-linux-<arch>.tar.gz
	// (flannel-io/flannel releases), flannel-<arch> (flannel-io/cni-plugin).
	var want []string
	for _, arch := range arches {
		want = append(want, "flanneld-"+arch, "flannel-"+arch, "flannelctl-"+arch,
			"flannel-"+version+"-linux-"+arch+".tar.gz")
	}
	want = append(want, "kube-flannel.yml", "kube-flannel-etcd.yml", "sha256sums.txt")
	slices.Sort(want)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("release files:\n%q\nwant\n%q", got, want)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	for _, arch := range arches {
		bins := map[string][]byte{}
		for _, name := range []string{"flanneld", "flannel", "flannelctl"} {
			b := read(name + "-" + arch)
			bins[name] = b
			if err := checkStaticELF(b, arch); err != nil {
				t.Errorf("%s-%s: %v", name, arch, err)
			}
			// The version is stamped: the string is in the binary, and a
			// native one prints it.
			if !bytes.Contains(b, []byte(version)) {
				t.Errorf("%s-%s does not contain %s", name, arch, version)
			}
			if arch == runtime.GOARCH && runtime.GOOS == "linux" {
				v, err := exec.Command(filepath.Join(out, name+"-"+arch), "--version").Output()
				if err != nil || string(v) != version+"\n" {
					t.Errorf("%s-%s --version: %q, %v; want %q", name, arch, v, err, version)
				}
			}
		}

		// The tarball: the binaries (the same bytes), the script, the unit,
		// its environment file, the CNI network list and the docs, flat as
		// upstream's, owned by root, executables 0755.
		tgz := "flannel-" + version + "-linux-" + arch + ".tar.gz"
		files := readTarGz(t, read(tgz))
		var names []string
		for name := range files {
			names = append(names, name)
		}
		slices.Sort(names)
		wantNames := []string{"10-flannel.conflist", "CHANGELOG.md", "README.md", "flannel", "flannelctl", "flanneld", "flanneld.env", "flanneld.service", "mk-docker-opts.sh"}
		if !slices.Equal(names, wantNames) {
			t.Errorf("%s holds %q, want %q", tgz, names, wantNames)
		}
		for name, f := range files {
			if f.hdr.Uid != 0 || f.hdr.Gid != 0 {
				t.Errorf("%s: %s owned by %d:%d, want 0:0", tgz, name, f.hdr.Uid, f.hdr.Gid)
			}
			exe := bins[name] != nil || name == "mk-docker-opts.sh"
			if mode := f.hdr.FileInfo().Mode().Perm(); exe && mode != 0o755 || !exe && mode != 0o644 {
				t.Errorf("%s: %s mode %v", tgz, name, mode)
			}
			switch {
			case bins[name] != nil:
				if !bytes.Equal(f.data, bins[name]) {
					t.Errorf("%s: %s differs from %s-%s", tgz, name, name, arch)
				}
			case name == "README.md" || name == "CHANGELOG.md":
				checkSameAs(t, tgz, name, f.data, filepath.Join(repoRoot, name))
			default:
				checkSameAs(t, tgz, name, f.data, filepath.Join(distDir, name))
			}
		}
	}

	// sha256sum -c format, every other file once.
	sums := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(read("sha256sums.txt"))), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("sha256sums.txt: bad line %q", l)
		}
		sums[name] = sum
	}
	for _, name := range want {
		if name == "sha256sums.txt" {
			continue
		}
		h := sha256.Sum256(read(name))
		if sums[name] != hex.EncodeToString(h[:]) {
			t.Errorf("sha256sums.txt: %s is %q, want %x", name, sums[name], h)
		}
		delete(sums, name)
	}
	for name := range sums {
		t.Errorf("sha256sums.txt lists %s, which is not a release file", name)
	}

	// The manifests run this version's image, and differ from dist's in
	// nothing else.
	name, _, _ := strings.Cut(image, ":")
	for _, m := range []string{"kube-flannel.yml", "kube-flannel-etcd.yml"} {
		rel := string(read(m))
		if strings.Count(rel, name+":"+version) < 2 || strings.Contains(rel, image) {
			t.Errorf("release %s does not run %s:%s everywhere", m, name, version)
		}
		if strings.ReplaceAll(rel, name+":"+version, image) != readDistFile(t, m) {
			t.Errorf("release %s differs from dist/%s in more than the image tag", m, m)
		}
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTarGz(t *testing.T, b []byte) map[string]tarFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]tarFile{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		// Flat, as upstream's: flanneld, not ./flanneld or a directory.
		name := hdr.Name
		if hdr.Typeflag != tar.TypeReg || strings.Contains(name, "/") {
			t.Errorf("tarball entry %q (type %c), want plain files without a directory", name, hdr.Typeflag)
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = tarFile{hdr, data}
	}
	return files
}

func checkSameAs(t *testing.T, tgz, name string, got []byte, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %s differs from %s", tgz, name, path)
	}
}

// The ELF check bites: the test binary itself is dynamically linked when
// cgo is on, and is for this machine only.
func TestCheckStaticELF(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads this Linux executable")
	}
	if _, ok := releaseMachines[runtime.GOARCH]; !ok {
		t.Skip("not a release architecture")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	other := "s390x"
	if runtime.GOARCH == "s390x" {
		other = "amd64"
	}
	if err := checkStaticELF(b, other); err == nil || !strings.Contains(err.Error(), "machine") {
		t.Errorf("checkStaticELF(this test binary, %s) = %v, want a machine error", other, err)
	}
	err = checkStaticELF(b, runtime.GOARCH)
	dynamic := false
	if f, ferr := elf.Open(exe); ferr == nil {
		for _, p := range f.Progs {
			dynamic = dynamic || p.Type == elf.PT_INTERP
		}
		f.Close()
	}
	if dynamic && (err == nil || !strings.Contains(err.Error(), "dynamic")) {
		t.Errorf("checkStaticELF(dynamic test binary) = %v, want a dynamic-linking error", err)
	}
	if !dynamic && err != nil {
		t.Errorf("checkStaticELF(static test binary) = %v", err)
	}
}

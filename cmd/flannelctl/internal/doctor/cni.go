package doctor

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CNIPlugins are the plugins a flannel pod network needs: the flannel plugin
// and what its delegate and the usual conflist call.
var CNIPlugins = []string{"flannel", "bridge", "host-local", "loopback", "portmap"}

// cniConfExts are the file extensions libcni (and so containerd and CRI-O)
// load from the CNI config directory.
var cniConfExts = []string{".conf", ".conflist", ".json"}

// GatherCNI reads the CNI plugin directories (searched in order, like the
// runtimes' plugin path) and the CNI config directory.
func GatherCNI(binDirs []string, confDir string) CNIFacts {
	c := CNIFacts{BinDirs: binDirs, ConfDir: confDir, Plugins: map[string]string{}, NotExec: map[string]bool{}}
	for _, p := range CNIPlugins {
		for _, d := range binDirs {
			path := filepath.Join(d, p)
			st, err := os.Stat(path)
			if err != nil || st.IsDir() {
				continue
			}
			c.Plugins[p] = path
			c.NotExec[p] = st.Mode().Perm()&0o111 == 0
			break
		}
	}
	entries, err := os.ReadDir(confDir)
	if err != nil {
		c.ConfErr = err
		return c
	}
	for _, e := range entries {
		if e.IsDir() || !slices.Contains(cniConfExts, filepath.Ext(e.Name())) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(confDir, e.Name()))
		conf := CNIConf{Name: e.Name()}
		if err != nil {
			conf.Err = err
		} else {
			conf.Flannel, conf.Err = usesFlannel(data)
		}
		c.Confs = append(c.Confs, conf)
	}
	// os.ReadDir sorts by name, the order runtimes pick configs in.
	return c
}

// usesFlannel reports whether a .conf or .conflist names the flannel plugin.
func usesFlannel(data []byte) (bool, error) {
	var j struct {
		Type    string
		Plugins []struct{ Type string }
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return false, fmt.Errorf("not a JSON network config: %v", err)
	}
	if j.Type == "flannel" {
		return true, nil
	}
	for _, p := range j.Plugins {
		if p.Type == "flannel" {
			return true, nil
		}
	}
	return false, nil
}

func checkCNI(r *report, c CNIFacts) {
	if len(c.BinDirs) == 0 && c.ConfDir == "" {
		return // not gathered
	}
	dirs := strings.Join(c.BinDirs, ":")
	first := "/opt/cni/bin"
	if len(c.BinDirs) > 0 {
		first = c.BinDirs[0]
	}
	var found []string
	for _, p := range CNIPlugins {
		path := c.Plugins[p]
		switch {
		case path == "" && p == "flannel":
			r.fail(fmt.Sprintf("install flanneld-ng's CNI plugin (cmd/cni-plugin) as %s/flannel: containernetworking-plugins 1.0 and later no longer ship it", first),
				"CNI plugin flannel not found in %s: pods cannot start", dirs)
		case path == "":
			r.fail(fmt.Sprintf("install the CNI reference plugins into %s (apt install containernetworking-plugins, or https://github.com/containernetworking/plugins/releases)", first),
				"CNI plugin %s not found in %s", p, dirs)
		case c.NotExec[p]:
			r.fail("chmod 0755 "+path, "CNI plugin %s is not executable", path)
		default:
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		r.ok("CNI plugins %s found in %s", strings.Join(found, ", "), dirs)
	}
	if c.ConfErr != nil {
		what := c.ConfErr.Error()
		if pe, ok := c.ConfErr.(*fs.PathError); ok {
			what = pe.Err.Error()
		}
		r.fail(fmt.Sprintf("install flannel's CNI config (dist/10-flannel.conflist) into %s", c.ConfDir),
			"CNI config directory %s: %s", c.ConfDir, what)
		return
	}
	var flannel []string
	active := ""
	for _, conf := range c.Confs {
		if conf.Err != nil {
			r.fail("fix or remove "+filepath.Join(c.ConfDir, conf.Name), "CNI config %s: %v", filepath.Join(c.ConfDir, conf.Name), conf.Err)
			continue
		}
		if active == "" {
			active = conf.Name
		}
		if conf.Flannel {
			flannel = append(flannel, conf.Name)
		}
	}
	switch {
	case len(flannel) == 0:
		r.fail(fmt.Sprintf("install flannel's CNI config (dist/10-flannel.conflist) into %s", c.ConfDir),
			"no CNI config in %s uses the flannel plugin", c.ConfDir)
	case active != flannel[0]:
		r.fail(fmt.Sprintf("remove or rename %s: container runtimes use the first config by name", filepath.Join(c.ConfDir, active)),
			"the container runtime uses %s, not flannel's %s", filepath.Join(c.ConfDir, active), flannel[0])
	default:
		r.ok("CNI config %s uses the flannel plugin", filepath.Join(c.ConfDir, active))
	}
}

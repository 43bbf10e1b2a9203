package kubelet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// MultusConfig describes the multus thin plugin as a node's runtime runs it.
type MultusConfig struct {
	// Kubeconfig lets multus read pods and NADs.
	Kubeconfig string
	// BinDirs hold every plugin multus may delegate to (loopback, underpool,
	// macvlan, ...). Multus takes a single binDir, so they are linked into
	// Dir/bin.
	BinDirs []string
	// Dir receives the linked bin folder, multus' own cache and its log.
	Dir string
}

// MultusConflist links cfg.BinDirs into one folder and returns the multus
// thin conflist, with loopback standing in for the cluster network (the
// underlay networks then come from the pods' networks annotation).
func MultusConflist(cfg MultusConfig) ([]byte, error) {
	binDir := filepath.Join(cfg.Dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("multus bin dir: %w", err)
	}
	for _, dir := range cfg.BinDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("multus bin dir: %w", err)
		}
		for _, e := range entries {
			link := filepath.Join(binDir, e.Name())
			if _, err := os.Lstat(link); err == nil {
				continue // an earlier BinDirs entry wins, as in CNI_PATH
			}
			if err := os.Symlink(filepath.Join(dir, e.Name()), link); err != nil {
				return nil, fmt.Errorf("multus bin dir: %w", err)
			}
		}
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "multus-cni-network",
		"plugins": []any{map[string]any{
			"type": "multus", "kubeconfig": cfg.Kubeconfig,
			"cniDir": filepath.Join(cfg.Dir, "multus-cache"), "binDir": binDir,
			// without logLevel multus prints debug lines on stderr
			"logFile": filepath.Join(cfg.Dir, "multus.log"), "logLevel": "error",
			"delegates": []any{map[string]any{"cniVersion": "1.0.0", "name": "default",
				"plugins": []any{map[string]any{"type": "loopback"}}}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("multus conflist: %w", err)
	}
	return conf, nil
}

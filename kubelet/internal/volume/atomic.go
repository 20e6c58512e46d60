package volume

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File is one file of a volume's payload.
type File struct {
	Data []byte
	Mode os.FileMode
}

const dataLink = "..data"

// WriteAtomic makes dir hold exactly payload (relative paths -> files) so a reader never sees a
// mix of old and new: the files go to a fresh timestamped directory, then one rename swaps the
// ..data symlink to it; the visible names are symlinks through ..data. Returns whether anything
// changed. gid, when >= 0, owns the files (fsGroup).
func WriteAtomic(dir string, payload map[string]File, gid int) (bool, error) {
	for p := range payload {
		if err := validPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	if old != "" && same(filepath.Join(dir, old), payload) {
		return false, nil
	}
	tsDir, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("create timestamped dir in %s: %w", dir, err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return false, err
	}
	for p, f := range payload {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return false, fmt.Errorf("write %s: %w", full, err)
		}
		if err := os.Chmod(full, f.Mode); err != nil {
			return false, err
		}
		if gid >= 0 {
			if err := os.Chown(full, -1, gid); err != nil {
				return false, fmt.Errorf("chown %s: %w", full, err)
			}
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return false, fmt.Errorf("symlink %s: %w", tmpLink, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		return false, fmt.Errorf("swap %s: %w", dataLink, err)
	}
	// Visible names: one symlink per top-level path component.
	want := map[string]bool{}
	for p := range payload {
		top := strings.SplitN(p, "/", 2)[0]
		want[top] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		target := filepath.Join(dataLink, top)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(target, link); err != nil {
			return false, fmt.Errorf("symlink %s: %w", link, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") {
			if n != dataLink && n != filepath.Base(tsDir) && e.IsDir() {
				_ = os.RemoveAll(filepath.Join(dir, n))
			}
			continue
		}
		if !want[n] {
			_ = os.RemoveAll(filepath.Join(dir, n))
		}
	}
	return true, nil
}

func validPath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return fmt.Errorf("invalid path %q: must be relative and not contain '..'", p)
	}
	return nil
}

// same reports whether dir already holds exactly payload.
func same(dir string, payload map[string]File) bool {
	n := 0
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		f, ok := payload[rel]
		if !ok || info.Mode().Perm() != f.Mode.Perm() {
			return fmt.Errorf("differs")
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(b, f.Data) {
			return fmt.Errorf("differs")
		}
		n++
		return nil
	})
	return err == nil && n == len(payload)
}

// sortedKeys returns map keys in order (payloads are built deterministically).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

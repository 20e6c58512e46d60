package charts

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kubenode/kubenode/e2e/images"
)

// The images `make images` placed in bin/images are tagged with the version their binary reports,
// and hold that binary where the charts run it.
func TestComponentImages(t *testing.T) {
	dir := os.Getenv("KUBENODE_IMAGES_DIR")
	if dir == "" {
		t.Skip("KUBENODE_IMAGES_DIR not set: run through make test-charts (it runs make images)")
	}
	for _, tc := range []struct {
		file, repo, binary string
		applets            []string
	}{
		{"kubelet.tar", images.KubeletRepository, images.KubeletPath, []string{"sh", "cp", "mv", "sleep"}},
		{"kube-proxy.tar", images.KubeProxyRepository, images.KubeProxyPath, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			img, err := tarball.ImageFromPath(path, nil)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				t.Fatal(err)
			}
			if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || !strings.HasPrefix(manifest[0].RepoTags[0], tc.repo+":v") {
				t.Fatalf("tarball tags %+v, want one %s:v<version>", manifest, tc.repo)
			}
			version := strings.TrimPrefix(manifest[0].RepoTags[0], tc.repo+":")
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != tc.binary {
				t.Errorf("config os %q entrypoint %v, want linux %s", cf.OS, cf.Config.Entrypoint, tc.binary)
			}

			files := imageFiles(t, img)
			bin, ok := files[strings.TrimPrefix(tc.binary, "/")]
			if !ok {
				t.Fatalf("image has no %s", tc.binary)
			}
			for _, a := range tc.applets {
				if _, ok := files["bin/"+a]; !ok {
					t.Errorf("image lacks /bin/%s that the kubelet chart's installer runs", a)
				}
			}
			exe := filepath.Join(t.TempDir(), filepath.Base(tc.binary))
			if err := os.WriteFile(exe, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(exe, "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s --version: %v: %s", tc.binary, err, out)
			}
			if want := filepath.Base(tc.binary) + " " + version + " "; !strings.HasPrefix(string(out), want) {
				t.Errorf("%s --version printed %q, want the image tag %s", tc.binary, out, version)
			}
		})
	}
}

// imageFiles returns the image's flattened file system: regular files with their content,
// symlinks and directories with none.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read image file system: %v", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")
		if h.Typeflag != tar.TypeReg {
			files[name] = nil
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
}

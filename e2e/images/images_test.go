package images

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestBuildServeAndCache builds the images into an empty cache, pulls each name back from the
// registry as containerd would (repository path as on the real host), and checks that a second
// Build reuses the cached tarballs instead of rebuilding.
func TestBuildServeAndCache(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox: apt-get install busybox-static")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cache := t.TempDir()
	imgs, err := Build(ctx, Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	tars, _ := filepath.Glob(filepath.Join(cache, "*.tar"))
	if len(tars) != 3 {
		t.Fatalf("cache holds %d tarballs, want 3: %v", len(tars), tars)
	}
	stamps := map[string]time.Time{}
	for _, p := range tars {
		fi, _ := os.Stat(p)
		stamps[p] = fi.ModTime()
	}

	reg, err := Serve(ctx, "", imgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for _, tc := range []struct{ ref, repo string }{
		{Pause, "pause:3.10"},
		{Busybox, "library/busybox:1.36"},
		{BusyboxLatest, "library/busybox:latest"},
		{Echo, "echo:v1"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			ref, err := name.NewTag(reg.Addr()+"/"+tc.repo, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(ref, remote.WithContext(ctx))
			if err != nil {
				t.Fatalf("pull %s: %v", ref, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture == "" {
				t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
			}
			if len(cf.Config.Entrypoint) == 0 && len(cf.Config.Cmd) == 0 {
				t.Errorf("%s has neither entrypoint nor cmd", tc.ref)
			}
			checkLayersComplete(t, img)
		})
	}

	if _, err := Build(ctx, Options{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	for p, before := range stamps {
		fi, err := os.Stat(p)
		if err != nil || !fi.ModTime().Equal(before) {
			t.Errorf("%s was rebuilt on the second Build", p)
		}
	}
}

// checkLayersComplete reads every layer of img as a tar stream to its end: every entry whole and
// padded, and the end-of-archive blocks present (GNU tar and strict readers refuse less).
func checkLayersComplete(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			_, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %d is not a whole tar: %v", i, err)
			}
		}
		if len(data)%512 != 0 || len(data) < 1024 || !bytes.Equal(data[len(data)-1024:], make([]byte, 1024)) {
			t.Fatalf("layer %d (%d bytes) does not end with the two zero blocks that close a tar", i, len(data))
		}
	}
}

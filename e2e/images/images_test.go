package images

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
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

package charts

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// helmEnv says where helm is; `make test-charts` sets it.
const helmEnv = "KUBENODE_HELM_BIN"

// chartDir is the directory of one of the repository's charts.
func chartDir(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("KUBENODE_CHARTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "charts")
	}
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "Chart.yaml")); err != nil {
		t.Fatalf("chart %s: %v", name, err)
	}
	return p
}

// helmRunner runs the helm command with its own config, cache and data directories, so tests
// never read or write the user's helm state.
type helmRunner struct {
	bin string
	env []string
}

func newHelm(t *testing.T) helmRunner {
	t.Helper()
	bin := os.Getenv(helmEnv)
	if bin == "" {
		t.Skip(helmEnv + " not set: run through make test-charts (it builds helm with make helm)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v (run make helm)", helmEnv, bin, err)
	}
	home := t.TempDir()
	env := append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	return helmRunner{bin: bin, env: env}
}

// run returns stdout, and an error carrying stderr when helm fails.
func (h helmRunner) run(args ...string) (string, error) {
	cmd := exec.Command(h.bin, args...)
	cmd.Env = h.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{args: args, err: err, stderr: stderr.String() + stdout.String()}
	}
	return stdout.String(), nil
}

func (h helmRunner) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type helmError struct {
	args   []string
	err    error
	stderr string
}

func (e *helmError) Error() string {
	return "helm " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.stderr
}

// strictDecoder refuses fields the API types do not have, so a typo in a template fails here
// rather than being dropped by the API server.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeManifests splits helm's multi-document output and decodes every object into its typed
// form.
func decodeManifests(t *testing.T, manifest string) []runtime.Object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split manifests: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode rendered object: %v\n%s", err, doc)
		}
		if gvk.Kind == "" {
			t.Fatalf("rendered object without kind:\n%s", doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

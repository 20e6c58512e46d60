package proxyconfig

import (
	"os"
	"strings"
	"testing"

	"github.com/kubenode/kubenode/common/config"
)

func TestReadmeListsUpstreamFields(t *testing.T) {
	readme, err := os.ReadFile("../../../api/README.md")
	if err != nil {
		t.Fatalf("api/README.md documents the upstream fields: %v", err)
	}
	for _, f := range UpstreamFields() {
		if f.Handling != config.Supported && !strings.Contains(string(readme), "`"+f.Path+"`") {
			t.Errorf("api/README.md does not list upstream kube-proxy field %s (%s)", f.Path, f.Handling)
		}
	}
}

// Command kubelet is the kubenode node agent.
package main

import (
	"fmt"
	"os"

	"github.com/kubenode/kubenode/common/signals"
	"github.com/kubenode/kubenode/kubelet/internal/app"
)

func main() {
	// SIGTERM and SIGINT cancel the context: run shuts down cleanly, leaving pods running.
	// A second signal exits at once.
	ctx, stop := signals.Context()
	err := app.NewCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Component, err)
		os.Exit(1)
	}
}

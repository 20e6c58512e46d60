// Command kubelet is the kubenode node agent.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubenode/kubenode/kubelet/internal/app"
)

func main() {
	// SIGTERM and SIGINT cancel the context: run shuts down cleanly, leaving pods running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.NewCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Component, err)
		os.Exit(1)
	}
}

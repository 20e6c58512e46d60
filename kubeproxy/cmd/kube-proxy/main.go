// Command kube-proxy is the kubenode service proxy.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubenode/kubenode/kubeproxy/internal/app"
)

func main() {
	// SIGTERM and SIGINT cancel the context: run shuts down cleanly, leaving the dataplane in place.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.NewCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Component, err)
		os.Exit(1)
	}
}

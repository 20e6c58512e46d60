package signals

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// ExitCode is the status the process exits with on a second signal.
const ExitCode = 1

// Context returns a context that is cancelled on the first SIGTERM or SIGINT;
// context.Cause names the signal. A second signal before stop exits the
// process with ExitCode. stop cancels the context and restores the default
// signal behaviour; call it when shutdown is done.
func Context() (ctx context.Context, stop context.CancelFunc) {
	return notify(context.Background(), os.Exit, os.Stderr, os.Interrupt, syscall.SIGTERM)
}

// notify is Context with the exit function, the writer for the exit notice
// and the signals chosen by the caller.
func notify(parent context.Context, exit func(int), stderr io.Writer, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	// Buffered for both signals: signal.Notify drops what it cannot deliver.
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})

	go func() {
		select {
		case sig := <-ch:
			cancel(fmt.Errorf("received signal %v", sig))
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "received signal %v again during shutdown, exiting now\n", sig)
			exit(ExitCode)
		case <-done:
		}
	}()

	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(context.Canceled)
		})
	}
}

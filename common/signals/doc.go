// Package signals turns SIGTERM and SIGINT into context cancellation for a
// node agent's main: the first signal cancels the context so the agent can
// shut down cleanly; a second one, while that shutdown is still running,
// exits the process at once with code 1, for the operator who does not want
// to wait.
//
//	ctx, stop := signals.Context()
//	err := app.NewCommand().ExecuteContext(ctx)
//	stop()
package signals

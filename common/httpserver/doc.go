// Package httpserver is the node agents' small HTTP endpoint server: health
// (/healthz, /livez), readiness (/readyz), Prometheus metrics from a registry
// the caller owns (/metrics), and optionally /debug/pprof/, over plain HTTP
// or TLS.
//
// Health endpoints answer like kube-apiserver's: 200 "ok" when every check
// passes, 500 naming the failed checks otherwise; ?verbose lists every check
// as "[+]name ok" or "[-]name failed: reason"; ?exclude=name skips a check;
// /healthz/<name> runs one check.
//
//	srv := httpserver.New("127.0.0.1:10248", logger, httpserver.WithMetrics(reg))
//	srv.AddHealthCheck("pleg", plegHealthy)
//	return srv.Run(ctx) // blocks; shuts down gracefully when ctx ends
package httpserver

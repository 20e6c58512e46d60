package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestRunnerRestartsAndStops(t *testing.T) {
	dir := t.TempDir()
	r := runner{
		minBackoff: 50 * time.Millisecond, maxBackoff: 100 * time.Millisecond, grace: 5 * time.Second,
		output: func(name string) (io.WriteCloser, error) { return os.Create(filepath.Join(dir, name+".log")) },
		log:    zaptest.NewLogger(t),
	}
	crashes := filepath.Join(dir, "crashes")
	terms := filepath.Join(dir, "terms")
	specs := []procSpec{
		{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + crashes + "; exit 1"}},
		{Name: "server", Path: "/bin/sh", Args: []string{"-c", `trap "echo term >> ` + terms + `; exit 0" TERM; echo up; while :; do sleep 0.05; done`}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, specs); close(done) }()

	deadline := time.Now().Add(10 * time.Second)
	for lines(crashes) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("a crashing process ran %d times in 10s, want restarts", lines(crashes))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if n := lines(terms); n != 1 {
		t.Errorf("the long-running process got SIGTERM %d times, want 1", n)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "server.log")); !strings.Contains(string(data), "up") {
		t.Errorf("server.log = %q, want the process's output", data)
	}
}

func lines(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "\n")
}

package signals

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as a process under test (see TestMain).
const childEnv = "KUBENODE_SIGNALS_TEST_CHILD"

// TestMain runs the child role when re-executed by TestSignals: it waits
// for its context, reports the cause, then "shuts down" slowly (20s) unless
// asked to finish at once.
func TestMain(m *testing.M) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		os.Exit(m.Run())
	}
	ctx, stop := Context()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("cancelled:", context.Cause(ctx))
	if mode == "slow-shutdown" {
		time.Sleep(20 * time.Second)
	}
	stop()
	fmt.Println("clean exit")
	os.Exit(0)
}

func TestSignals(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		signals   []syscall.Signal
		wantCode  int
		wantLines []string
		wantErr   string // on the child's stderr
	}{
		{
			name: "SIGTERM cancels, shutdown finishes", mode: "quick-shutdown",
			signals: []syscall.Signal{syscall.SIGTERM}, wantCode: 0,
			wantLines: []string{"ready", "cancelled: received signal terminated", "clean exit"},
		},
		{
			name: "SIGINT cancels, shutdown finishes", mode: "quick-shutdown",
			signals: []syscall.Signal{syscall.SIGINT}, wantCode: 0,
			wantLines: []string{"ready", "cancelled: received signal interrupt", "clean exit"},
		},
		{
			name: "second signal exits at once with 1", mode: "slow-shutdown",
			signals: []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}, wantCode: 1,
			wantLines: []string{"ready", "cancelled: received signal terminated"},
			wantErr:   "received signal interrupt again during shutdown, exiting now",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+tt.mode)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})

			lines := make(chan string, 10)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
				exited <- cmd.Wait()
			}()
			var got []string
			next := func() string {
				select {
				case l, ok := <-lines:
					if ok {
						got = append(got, l)
					}
					return l
				case <-time.After(10 * time.Second):
					t.Fatalf("child printed nothing more within 10s; so far %q", got)
					return ""
				}
			}

			if l := next(); l != "ready" {
				t.Fatalf("child's first line = %q, want ready", l)
			}
			var sent time.Time
			for i, sig := range tt.signals {
				sent = time.Now()
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					next() // the cancellation line: the handler has seen the first signal
				}
			}
			for l := next(); l != ""; l = next() {
			}

			var waitErr error
			select {
			case waitErr = <-exited:
				exited <- waitErr // for the cleanup
			case <-time.After(10 * time.Second):
				t.Fatal("child did not exit within 10s")
			}
			// The slow child would take 20s on its own.
			if took := time.Since(sent); took > 5*time.Second {
				t.Errorf("child took %v to exit after the last signal", took)
			}
			code := 0
			var exitErr *exec.ExitError
			if errors.As(waitErr, &exitErr) {
				code = exitErr.ExitCode()
			} else if waitErr != nil {
				t.Fatal(waitErr)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.wantLines, "\n") {
				t.Errorf("child printed %q, want %q", got, tt.wantLines)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("child stderr = %q, want it to contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

// stop ends signal handling: the context is cancelled, and a later signal is
// not turned into an exit.
func TestStop(t *testing.T) {
	exits := make(chan int, 1)
	ctx, stop := notify(context.Background(), func(code int) { exits <- code }, io.Discard, syscall.SIGUSR1)
	stop()
	stop() // idempotent
	if !errors.Is(context.Cause(ctx), context.Canceled) {
		t.Fatalf("cause after stop = %v, want context.Canceled", context.Cause(ctx))
	}
	select {
	case code := <-exits:
		t.Fatalf("exit(%d) called without a signal", code)
	case <-time.After(50 * time.Millisecond):
	}
}

// Two signals in-process: the first cancels with the signal as cause, the
// second calls exit with ExitCode.
func TestSecondSignalCallsExit(t *testing.T) {
	exits := make(chan int, 1)
	var notice strings.Builder
	ctx, stop := notify(context.Background(), func(code int) { exits <- code }, &notice, syscall.SIGUSR1)
	defer stop()

	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled within 5s of the signal")
	}
	if got := context.Cause(ctx).Error(); got != "received signal user defined signal 1" {
		t.Errorf("cause = %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exits:
		if code != ExitCode {
			t.Errorf("exit(%d), want exit(%d)", code, ExitCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not call exit within 5s")
	}
}

package kubeletbench

import (
	"context"
	"fmt"
	"time"
)

// measureIdle samples a process's VmRSS every second for window and its CPU (utime+stime) at
// both ends, and returns the highest RSS and the average cores used.
func measureIdle(ctx context.Context, pid, pods int, window time.Duration, alive func() error) (Usage, error) {
	first, err := ReadProc(pid)
	if err != nil {
		return Usage{}, err
	}
	t0 := time.Now()
	peak := first
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(window)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return Usage{}, ctx.Err()
		case <-tick.C:
			if err := alive(); err != nil {
				return Usage{}, err
			}
			s, err := ReadProc(pid)
			if err != nil {
				return Usage{}, err
			}
			if s.RSSBytes > peak.RSSBytes {
				peak = s
			}
		case <-end.C:
			last, err := ReadProc(pid)
			if err != nil {
				return Usage{}, err
			}
			elapsed := time.Since(t0)
			if last.CPUTicks < first.CPUTicks {
				return Usage{}, fmt.Errorf("process %d: CPU ticks went back from %d to %d (pid reused?)", pid, first.CPUTicks, last.CPUTicks)
			}
			if last.RSSBytes > peak.RSSBytes {
				peak = last
			}
			return Usage{
				Pods:      pods,
				RSSBytes:  peak.RSSBytes,
				AnonBytes: peak.AnonBytes,
				FileBytes: peak.FileBytes,
				Cores:     usageCores(last.CPUTicks-first.CPUTicks, elapsed),
				Window:    elapsed,
			}, nil
		}
	}
}

// usageCores converts CPU ticks consumed over wall time into average cores.
func usageCores(ticks uint64, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(ticks) / userHZ / wall.Seconds()
}

package cm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// SwapDevices parses /proc/swaps and returns the active swap devices or files. The first line is
// a header ("Filename Type Size Used Priority").
func SwapDevices(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	var out []string
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			first = false
			if strings.HasPrefix(line, "Filename") {
				continue
			}
		}
		if line == "" {
			continue
		}
		out = append(out, strings.Fields(line)[0])
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckSwap refuses to run with swap on when failSwapOn is set, as upstream's kubelet does:
// memory limits and eviction assume that a pod's memory is never swapped out. swapsPath is
// /proc/swaps.
func CheckSwap(swapsPath string, failSwapOn bool) error {
	if !failSwapOn {
		return nil
	}
	f, err := os.Open(swapsPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // no swap support in this kernel
		}
		return fmt.Errorf("failSwapOn: read %s: %w", swapsPath, err)
	}
	defer f.Close()
	devs, err := SwapDevices(f)
	if err != nil {
		return fmt.Errorf("failSwapOn: read %s: %w", swapsPath, err)
	}
	if len(devs) > 0 {
		return fmt.Errorf("running with swap on is not supported (swap: %s); turn swap off or set failSwapOn: false in the kubelet configuration (--fail-swap-on=false)", strings.Join(devs, ", "))
	}
	return nil
}

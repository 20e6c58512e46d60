// Command ipvs-vm boots the Debian cloud kernel under qemu and runs a static
// test binary (go test -c -tags ipvskernel) with IPVS, dummy, veth and
// nftables modules loaded. It exits non-zero unless the guest reports PASS.
//
//	ipvs-vm -bin ipvs.test [-cache DIR] -- -test.v
//	ipvs-vm -bin ipvs.test -table -host-bench host.txt -- -test.run '^$' -test.bench Sync
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubenode/kubenode/e2e/qemuvm"
)

// Modules the IPVS backend and its kernel tests need.
var ipvsModules = []string{
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh",
	"dummy", "veth",
	"nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct", "nft_reject_ipv4",
}

func main() {
	home, _ := os.UserHomeDir()
	defCache := os.Getenv("KUBENODE_CACHE")
	if defCache == "" {
		defCache = filepath.Join(home, ".cache", "kubenode")
	}
	bin := flag.String("bin", "", "static test binary to run in the VM")
	cache := flag.String("cache", defCache, "cache directory for the kernel")
	timeout := flag.Duration("timeout", 10*time.Minute, "limit for the whole VM run")
	mem := flag.Int("mem", 512, "guest memory in MiB")
	hostBench := flag.String("host-bench", "", "with -table: go test -bench output of the Go side run on the host")
	table := flag.Bool("table", false, "print a markdown table of the IPVS sync benchmarks from the VM run (and -host-bench)")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "ipvs-vm: -bin is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, *bin, *cache, *timeout, *mem, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipvs-vm:", err)
		os.Exit(1)
	}
	if *table {
		all := map[benchKey]map[string]float64{}
		if *hostBench != "" {
			f, err := os.Open(*hostBench)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ipvs-vm:", err)
				os.Exit(1)
			}
			parseBench(f, "host", all)
			f.Close()
		}
		parseBench(strings.NewReader(res.Output), "vm", all)
		writeTable(os.Stdout, all)
	}
}

func run(ctx context.Context, bin, cache string, timeout time.Duration, mem int, args []string) (*qemuvm.Result, error) {
	start := time.Now()
	k, err := qemuvm.FetchKernel(ctx, cache)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "ipvs-vm: kernel %s ready in %s\n", k.Version, time.Since(start).Round(time.Millisecond))
	res, err := qemuvm.RunTestBinary(ctx, qemuvm.Options{
		Kernel: k, Binary: bin, Args: args, Modules: ipvsModules,
		MemoryMB: mem, Timeout: timeout, Console: os.Stdout,
	})
	if res != nil {
		fmt.Fprintf(os.Stderr, "ipvs-vm: VM ran %s\n", res.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "ipvs-vm: PASS")
	return res, nil
}

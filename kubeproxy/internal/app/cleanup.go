package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	proxyv1alpha1 "github.com/kubenode/kubenode/api/kubeproxy/v1alpha1"
	"github.com/kubenode/kubenode/common/log"
	"github.com/kubenode/kubenode/kubeproxy/internal/ipvs"
	"github.com/kubenode/kubenode/kubeproxy/internal/nft"
	"github.com/kubenode/kubenode/kubeproxy/internal/plan"
	"github.com/kubenode/kubenode/kubeproxy/internal/proxier"
)

// newCleanupCommand returns `kube-proxy cleanup`: remove everything any mode
// ever programmed, then exit 0. Safe to run again and on a clean node.
func newCleanupCommand() *cobra.Command {
	var logOpts log.Options
	var excludeCIDRs []string
	cmd := &cobra.Command{
		Use:          "cleanup",
		Short:        "Remove all nftables and IPVS state kube-proxy made (both modes, both families) and exit",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := log.New(logOpts, Component)
			if err != nil {
				return err
			}
			// Checked before anything is removed.
			for _, f := range []plan.Family{plan.IPv4, plan.IPv6} {
				if _, err := ipvsConfig(proxyv1alpha1.IPVSConfiguration{ExcludeCIDRs: excludeCIDRs}, f); err != nil {
					return err
				}
			}
			return cleanup(cmd.Context(), logger, func() []cleanerFactory { return defaultCleaners(excludeCIDRs) })
		},
	}
	logOpts.AddFlags(cmd.Flags())
	cmd.Flags().StringSliceVar(&excludeCIDRs, "ipvs-exclude-cidrs", nil, "CIDRs whose IPVS virtual servers cleanup leaves alone, as in ipvs.excludeCIDRs")
	return cmd
}

// cleanerFactory makes a backend of one mode and family for cleanup.
// errSkip means the mode cannot exist on this machine (no IPVS).
type cleanerFactory struct {
	mode string
	make func(f plan.Family, log *zap.Logger) (proxier.Dataplane, error)
}

var errSkip = errors.New("not present on this machine")

func defaultCleaners(ipvsExcludeCIDRs []string) []cleanerFactory {
	return []cleanerFactory{
		{mode: "nftables", make: func(f plan.Family, l *zap.Logger) (proxier.Dataplane, error) {
			return nft.New(nft.Config{Family: f}, l)
		}},
		{mode: "ipvs", make: func(f plan.Family, l *zap.Logger) (proxier.Dataplane, error) {
			c, err := ipvsConfig(proxyv1alpha1.IPVSConfiguration{ExcludeCIDRs: ipvsExcludeCIDRs}, f)
			if err != nil {
				return nil, err
			}
			b, err := ipvs.New(c, l)
			if errors.Is(err, ipvs.ErrNoIPVS) {
				return nil, errSkip
			}
			return b, err
		}},
	}
}

func cleanup(ctx context.Context, logger *zap.Logger, factories func() []cleanerFactory) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var errs []error
	for _, c := range factories() {
		for _, f := range []plan.Family{plan.IPv4, plan.IPv6} {
			l := logger.With(zap.String("mode", c.mode), zap.String("family", string(f)))
			dp, err := c.make(f, l)
			if errors.Is(err, errSkip) {
				l.Info("nothing to clean up: mode not supported by this kernel")
				continue
			}
			if err == nil {
				err = dp.Cleanup(ctx)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("cleaning up %s (%s): %w", c.mode, f, err))
				continue
			}
			l.Info("cleaned up")
		}
	}
	return errors.Join(errs...)
}

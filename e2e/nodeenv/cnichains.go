package nodeenv

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"go.uber.org/zap"
)

// cniChainNames are the per-pod nat chains the CNI plugins make for sandbox id on network net:
// the bridge plugin's ipMasq chain and portmap's DNAT chain. The plugins name them
// "CNI-" [prefix] + the hex SHA-512 of net+id, cut to 28 characters.
func cniChainNames(net, id string) []string {
	sum := sha512.Sum512([]byte(net + id))
	h := hex.EncodeToString(sum[:])
	return []string{"CNI-" + h[:24], "CNI-DN-" + h[:21]}
}

// deleteCNIChains removes what the CNI plugins added to the nat tables for sandboxes that
// never got a CNI DEL (containerd was killed): rules jumping to their per-pod chains, then
// those chains. The plugins program these through iptables-nft, so they are plain nftables
// objects in the "nat" tables.
func deleteCNIChains(net string, ids []string, log *zap.Logger) error {
	if len(ids) == 0 {
		return nil
	}
	ours := map[string]bool{}
	for _, id := range ids {
		for _, n := range cniChainNames(net, id) {
			ours[n] = true
		}
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: nftables: %w", err)
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: list nftables chains: %w", err)
	}
	var errs []error
	var doomed []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name != "nat" || (ch.Table.Family != nftables.TableFamilyIPv4 && ch.Table.Family != nftables.TableFamilyIPv6) {
			continue
		}
		if ours[ch.Name] {
			doomed = append(doomed, ch)
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			errs = append(errs, fmt.Errorf("nodeenv: teardown: rules of nat chain %s: %w", ch.Name, err))
			continue
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if v, ok := e.(*expr.Verdict); ok && ours[v.Chain] {
					if err := c.DelRule(r); err != nil {
						errs = append(errs, err)
					}
					break
				}
			}
		}
	}
	for _, ch := range doomed {
		c.FlushChain(ch)
		c.DelChain(ch)
	}
	if err := c.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("nodeenv: teardown: delete CNI nat chains: %w", err))
	} else if len(doomed) > 0 {
		log.Info("CNI nat chains deleted", zap.Int("chains", len(doomed)))
	}
	return errors.Join(errs...)
}

package nodeenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Teardown removes everything the environment in stateDir made: pods (over CRI while containerd
// answers), then containerd, shims and container processes, mounts under stateDir (rootfs, shm,
// netns), the bridge and its veths, cgroups, nftables tables of the node, CNI IPAM state, shim
// sockets and finally stateDir. It works after a crash (everything SIGKILLed) and is idempotent:
// with nothing left it does nothing and returns nil.
func Teardown(ctx context.Context, stateDir string, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nodeenv-teardown")
	sd, err := filepath.Abs(stateDir)
	if err != nil || sd == "/" || stateDir == "" {
		return fmt.Errorf("nodeenv: teardown: bad state dir %q", stateDir)
	}
	rec, err := readRecord(sd)
	if err != nil {
		return err
	}
	p := paths{root: sd}
	var errs []error
	add := func(err error) {
		if err != nil {
			log.Warn("teardown step failed", zap.Error(err))
			errs = append(errs, err)
		}
	}

	// 1. While containerd answers, let it and CNI undo pods cleanly (this also removes the
	// CNI plugins' iptables rules, which nothing else here knows about).
	if _, err := os.Stat(p.socket()); err == nil && processAlive(rec.ContainerdPID, sd) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		add(removeAllPods(cctx, "unix://"+p.socket(), log))
		cancel()
	}

	// 2. Kill containerd, shims and container processes.
	tasks := readTasks(p)
	cgroups := append([]string(nil), rec.CgroupRoots...)
	for _, t := range tasks {
		if t.cgroup != "" {
			cgroups = append(cgroups, t.cgroup)
		}
	}
	// containerd is among them: its --config argument is under the state dir.
	add(killOurs(sd, cgroups, log))

	// 3. Mounts under the state dir: container rootfs, sandbox shm, netns bind mounts.
	add(unmountUnder(sd, log))

	// 4. Network: the bridge and every link enslaved to it, then IPAM state.
	add(deleteBridge(rec.BridgeName, log))
	add(os.RemoveAll(filepath.Join(cniStateDir, "networks", rec.NetworkName)))
	if res, _ := filepath.Glob(filepath.Join(cniStateDir, "results", rec.NetworkName+"-*")); len(res) > 0 {
		for _, f := range res {
			add(os.Remove(f))
		}
	}

	// 5. cgroups: the containers' own, and the trees the kubelet made under CgroupRoots.
	add(removeCgroups(cgroups, log))

	// 6. nftables: the node's own tables in the host network namespace, and the per-pod nat
	// chains of CNI plugins that never got a DEL.
	add(deleteNFTables(rec.NFTablePrefixes, log))
	var ids []string
	for _, t := range tasks {
		ids = append(ids, t.id)
	}
	add(deleteCNIChains(rec.NetworkName, ids, log))

	// 7. What containerd, runc and libcni keep outside the state dir, per task: shim sockets,
	// runc's state and cached CNI results (also of containerd's own loopback network).
	for _, t := range tasks {
		if t.shimSocket != "" {
			if err := os.Remove(t.shimSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
				add(err)
			}
		}
		add(os.RemoveAll(filepath.Join(runcRoot, t.id)))
		res, _ := filepath.Glob(filepath.Join(cniStateDir, "results", "*-"+t.id+"-*"))
		for _, f := range res {
			add(os.Remove(f))
		}
	}

	// 8. The state dir, but never through a mount that is still there.
	if left := mountsUnder(sd); len(left) > 0 {
		add(fmt.Errorf("nodeenv: teardown: mounts still under %s, not removing it: %v", sd, left))
	} else {
		add(os.RemoveAll(sd))
	}
	if len(errs) == 0 {
		log.Info("teardown complete", zap.String("stateDir", sd))
	}
	return errors.Join(errs...)
}

// task is what a crashed containerd leaves in its state dir about one container or sandbox.
type task struct {
	id         string
	cgroup     string // linux.cgroupsPath of its OCI spec
	shimSocket string // file behind the shim's unix:// address
}

func readTasks(p paths) []task {
	bundles, _ := filepath.Glob(filepath.Join(p.taskDir(), "*", "*"))
	var out []task
	for _, b := range bundles {
		t := task{id: filepath.Base(b)}
		if data, err := os.ReadFile(filepath.Join(b, "config.json")); err == nil {
			var spec struct {
				Linux struct {
					CgroupsPath string `json:"cgroupsPath"`
				} `json:"linux"`
			}
			if json.Unmarshal(data, &spec) == nil {
				t.cgroup = cgroupPath(spec.Linux.CgroupsPath)
			}
		}
		if data, err := os.ReadFile(filepath.Join(b, "address")); err == nil {
			addr := strings.TrimPrefix(strings.TrimSpace(string(data)), "unix://")
			if strings.HasPrefix(addr, shimSocketDir+"/") {
				t.shimSocket = addr
			}
		}
		out = append(out, t)
	}
	return out
}

// cgroupPath turns an OCI cgroupsPath into a path below each hierarchy's root. The systemd
// form (slice:prefix:name) is not used here (SystemdCgroup = false) and is ignored.
func cgroupPath(s string) string {
	if s == "" || strings.Contains(s, ":") {
		return ""
	}
	c := filepath.Clean("/" + s)
	if c == "/" {
		return ""
	}
	return c
}

// processAlive reports whether pid runs and its command line names stateDir (a pid from a
// record may have been reused by an unrelated process).
func processAlive(pid int, stateDir string) bool {
	if pid <= 0 {
		return false
	}
	return cmdlineMentions(readCmdline(pid), stateDir)
}

func readCmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

func cmdlineMentions(args []string, dir string) bool {
	for _, a := range args {
		if a == dir || strings.Contains(a, dir+"/") {
			return true
		}
	}
	return false
}

// inCgroups reports whether pid is in (or below) one of cgroups in any hierarchy.
func inCgroups(pid int, cgroups []string) bool {
	if len(cgroups) == 0 {
		return false
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range cgroups {
			if parts[2] == c || strings.HasPrefix(parts[2], c+"/") {
				return true
			}
		}
	}
	return false
}

// ourProcesses lists processes of the environment: anything whose command line
// names the state dir (the shims pass its socket) and everything in the containers' cgroups.
func ourProcesses(stateDir string, cgroups []string) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == 1 {
			continue
		}
		if cmdlineMentions(readCmdline(pid), stateDir) || inCgroups(pid, cgroups) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killOurs SIGKILLs the environment's processes until none is left (new ones can appear while
// a dying shim's children are reparented).
func killOurs(stateDir string, cgroups []string, log *zap.Logger) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := ourProcesses(stateDir, cgroups)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodeenv: teardown: processes survive SIGKILL: %v", pids)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				log.Debug("killed", zap.Int("pid", pid), zap.Strings("cmdline", readCmdline(pid)))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountInfo is one line of /proc/self/mountinfo, the fields used here.
type mountInfo struct {
	mountPoint string
	fsType     string
}

func readMounts() []mountInfo {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []mountInfo
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		// fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, mountInfo{mountPoint: unescapeMount(f[4]), fsType: f[sep+1]})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mountsUnder(dir string) []string {
	var out []string
	for _, m := range readMounts() {
		if m.mountPoint == dir || strings.HasPrefix(m.mountPoint, dir+"/") {
			out = append(out, m.mountPoint)
		}
	}
	return out
}

// unmountUnder detaches every mount below dir, deepest first, until none is left (a mount can be
// stacked on the same point more than once).
func unmountUnder(dir string, log *zap.Logger) error {
	for range 10 {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				log.Warn("unmount", zap.String("path", mp), zap.Error(err))
			}
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("nodeenv: teardown: cannot unmount %v", left)
	}
	return nil
}

// deleteBridge removes the links enslaved to the bridge (host ends of pod veths) and the bridge.
func deleteBridge(name string, log *zap.Logger) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: netlink: %w", err)
	}
	defer h.Close()
	br, err := h.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("nodeenv: teardown: find bridge %s: %w", name, err)
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			// A veth also goes by itself when its pod's netns is released: ENODEV is fine.
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("nodeenv: teardown: delete %s: %w", l.Attrs().Name, err))
			}
		}
	}
	if err := h.LinkDel(br); err != nil {
		errs = append(errs, fmt.Errorf("nodeenv: teardown: delete bridge %s: %w", name, err))
	}
	log.Info("bridge deleted", zap.String("bridge", name))
	return errors.Join(errs...)
}

// cgroupMounts lists the mount points of every cgroup hierarchy, v1 and v2.
func cgroupMounts() []string {
	var out []string
	for _, m := range readMounts() {
		if m.fsType == "cgroup" || m.fsType == "cgroup2" {
			out = append(out, m.mountPoint)
		}
	}
	return out
}

// removeCgroups removes each cgroup tree bottom-up in every hierarchy, then the parents that
// became empty (a parent another node still uses is not empty and stays: rmdir refuses).
func removeCgroups(cgroups []string, log *zap.Logger) error {
	var errs []error
	removed := 0
	for _, mnt := range cgroupMounts() {
		for _, c := range cgroups {
			top := filepath.Join(mnt, c)
			if _, err := os.Stat(top); err != nil {
				continue
			}
			var dirs []string
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := rmdirRetry(d); err != nil {
					errs = append(errs, fmt.Errorf("nodeenv: teardown: remove cgroup %s: %w", d, err))
				} else {
					removed++
				}
			}
			for parent := filepath.Dir(top); parent != mnt && strings.HasPrefix(parent, mnt+"/"); parent = filepath.Dir(parent) {
				if unix.Rmdir(parent) != nil {
					break
				}
			}
		}
	}
	if removed > 0 {
		log.Info("cgroups removed", zap.Int("dirs", removed), zap.Strings("trees", cgroups))
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory; EBUSY lasts while killed tasks finish exiting.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// deleteNFTables deletes the host namespace's tables whose names start with one of prefixes.
func deleteNFTables(prefixes []string, log *zap.Logger) error {
	if len(prefixes) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: nftables: %w", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("nodeenv: teardown: list nftables tables: %w", err)
	}
	var deleted []string
	for _, t := range tables {
		for _, p := range prefixes {
			if strings.HasPrefix(t.Name, p) {
				c.DelTable(t)
				deleted = append(deleted, t.Name)
				break
			}
		}
	}
	if len(deleted) == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nodeenv: teardown: delete nftables tables %v: %w", deleted, err)
	}
	log.Info("nftables tables deleted", zap.Strings("tables", deleted))
	return nil
}

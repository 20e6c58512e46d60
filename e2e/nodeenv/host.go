package nodeenv

import (
	"net"
	"os"
	"os/exec"
)

// MissingPrerequisite says what this machine lacks to run an environment ("" when nothing):
// root, and containerd, runc, the CNI plugins and busybox (for the test images).
func MissingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "needs root (containerd, CNI, cgroups)"
	}
	for _, bin := range []string{"containerd", "runc", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "needs " + bin + ": apt-get install containerd runc containernetworking-plugins busybox-static"
		}
	}
	return ""
}

// HostIP is the address a node on this machine registers and serves NodePorts on: the one with
// the default route. A UDP "connection" sends nothing; it only asks the kernel which source
// address it would use.
func HostIP() string {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

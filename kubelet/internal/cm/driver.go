package cm

import "fmt"

// CheckCgroupDriver refuses a driver this kubelet cannot honour. With the systemd driver the
// runtime expects pod cgroup parents as systemd slices created through systemd itself; making
// cgroupfs paths instead would fail every pod's sandbox, so say so at start-up instead.
func CheckCgroupDriver(driver string) error {
	switch driver {
	case "", "cgroupfs":
		return nil
	case "systemd":
		return fmt.Errorf(`cgroupDriver: "systemd" is not supported yet: this kubelet makes pod cgroups through cgroupfs; ` +
			`set cgroupDriver: cgroupfs (--cgroup-driver=cgroupfs) and SystemdCgroup = false in containerd's runc options`)
	}
	return fmt.Errorf("cgroupDriver: unsupported value %q: use cgroupfs", driver)
}

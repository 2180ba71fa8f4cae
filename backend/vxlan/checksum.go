package vxlan

import (
	"strconv"
	"strings"
)

// csumFixedSince lists, per kernel series, the first release with the
// netfilter fix ea64d8d6c675 ("netfilter: nat: never update the UDP checksum
// when it's 0"). Older kernels corrupt the checksum of vxlan packets that
// kube-proxy's --random-fully NAT touches (the "63-second delay").
var csumFixedSince = map[[2]int]int{
	{5, 6}:  13,
	{5, 4}:  41,
	{4, 19}: 123,
	{4, 14}: 181,
}

// kernelHasCsumFix reports whether the running kernel (uname -r) has the
// fix. A release we cannot parse counts as fixed: we only turn offload off
// when we know why.
func kernelHasCsumFix(release string) bool {
	ver, _, _ := strings.Cut(release, "-")
	parts := strings.SplitN(ver, ".", 4)
	if len(parts) < 2 {
		return true
	}
	nums := make([]int, 3)
	for i := 0; i < 3 && i < len(parts); i++ {
		// "5.4.0+" and similar suffixes: keep the leading digits.
		d := parts[i]
		for j, c := range d {
			if c < '0' || c > '9' {
				d = d[:j]
				break
			}
		}
		n, err := strconv.Atoi(d)
		if err != nil {
			return true
		}
		nums[i] = n
	}
	major, minor, patch := nums[0], nums[1], nums[2]
	if major > 5 || (major == 5 && minor >= 7) {
		return true
	}
	if since, ok := csumFixedSince[[2]int{major, minor}]; ok {
		return patch >= since
	}
	return false
}

// checksumDecision resolves the ChecksumOffload option: whether to force
// TX checksum offload off or on, or leave the kernel's setting (neither).
func checksumDecision(mode, kernelRelease string, natted bool) (forceOff, forceOn bool, reason string) {
	switch mode {
	case ChecksumOff:
		return true, false, "Backend.ChecksumOffload is \"off\""
	case ChecksumOn:
		return false, true, "Backend.ChecksumOffload is \"on\""
	}
	if !kernelHasCsumFix(kernelRelease) {
		return true, false, "kernel " + kernelRelease + " lacks the netfilter UDP checksum fix (ea64d8d6c675)"
	}
	if natted {
		return true, false, "the public IP differs from the interface IP (NAT)"
	}
	return false, false, "kernel has the netfilter UDP checksum fix and no NAT"
}

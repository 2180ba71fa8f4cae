package main

// The spec's captured upstream delegate configs (cni-plugin.md section 4), with
// the inputs that produced them. Shared with the end-to-end tests, which check
// the saved file.
var goldenCases = []struct {
	name   string
	stdin  string
	env    string
	golden string
}{
	{
		name:   "ipv4 kube-flannel",
		stdin:  `{"name":"cbr0","cniVersion":"1.0.0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true},"ipam":{"dataDir":"/var/lib/cni/test-ipam"}}`,
		env:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		golden: `{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":"/var/lib/cni/test-ipam","ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`,
	},
	{
		name:   "dual stack with runtimeConfig and delegate mtu",
		stdin:  `{"name":"cbr0","cniVersion":"0.3.1","type":"flannel","delegate":{"hairpinMode":true,"mtu":1400},"ipam":{"dataDir":"/var/lib/cni/test-ipam"},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}`,
		env:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
		golden: `{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":true,"ipam":{"dataDir":"/var/lib/cni/test-ipam","ranges":[[{"subnet":"10.244.3.0/24"}],[{"subnet":"fd00:10:244:3::/64"}]],"routes":[{"dst":"10.244.0.0/16"},{"dst":"fd00:10:244::/56"}],"type":"host-local"},"isGateway":true,"mtu":1400,"name":"cbr0","runtimeConfig":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"type":"bridge"}`,
	},
	{
		name:   "ipv6 only",
		stdin:  `{"name":"cbr0","cniVersion":"1.0.0","type":"flannel","ipam":{"dataDir":"/var/lib/cni/test-ipam"}}`,
		env:    "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		golden: `{"cniVersion":"1.0.0","ipMasq":false,"ipam":{"dataDir":"/var/lib/cni/test-ipam","ranges":[[{"subnet":"fd00:10:244:3::/64"}]],"routes":[{"dst":"fd00:10:244::/56"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`,
	},
	{
		name:   "several networks with a duplicate",
		stdin:  `{"name":"cbr0","cniVersion":"1.0.0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true},"ipam":{"dataDir":"/var/lib/cni/test-ipam"}}`,
		env:    "FLANNEL_NETWORK=10.244.0.0/16,192.168.0.0/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		golden: `{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":"/var/lib/cni/test-ipam","ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"},{"dst":"192.168.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`,
	},
}

package chain

import "github.com/underpool/underpool/chain/ipamplugin"

// StateRoot holds every state directory a network config may name (rdma.stateDir): like
// the IPAM plugin's node paths (ipamplugin.Confine says why), a network config may only
// pick a place under it.
const StateRoot = "/var/lib/cni/underpool"

// loadStateDir confines rdma.stateDir; left out, the rdma default applies.
func (c *NetConf) loadStateDir() error {
	if c.RDMA.StateDir == "" {
		return nil
	}
	var err error
	c.RDMA.StateDir, err = ipamplugin.Confine("rdma.stateDir", c.RDMA.StateDir, StateRoot, "leave it out for the default")
	return err
}

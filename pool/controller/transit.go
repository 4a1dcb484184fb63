package controller

import "net/netip"

// Router adds and removes the host route that carries a claimed VM's pool
// address to its tenant bridge while the claim runs (docs/pool.md, "the
// transit route"). The Linux one speaks rtnetlink; tests fake it.
type Router interface {
	// AddHost routes addr/32 out of dev (replacing such a route).
	AddHost(addr netip.Addr, dev string) error
	// DelHost removes that route; an absent one is not an error.
	DelHost(addr netip.Addr, dev string) error
}

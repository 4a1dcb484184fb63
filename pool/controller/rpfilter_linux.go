package controller

import (
	"log/slog"
	"os"
)

// setRPFilter turns on strict reverse-path filtering on a bridge: a guest
// cannot send with a source address of another bridge's subnet (and so
// cannot pass for another network's instance at the IMDS, which knows
// guests by address).
func setRPFilter(log *slog.Logger, bridge string) {
	p := "/proc/sys/net/ipv4/conf/" + bridge + "/rp_filter"
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		log.Warn("cannot turn on reverse-path filtering; guests of other networks could spoof this one's addresses", "path", p, "err", err)
	}
}

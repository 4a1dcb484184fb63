package main

import (
	"net"
	"os"
)

// sdNotify sends state to systemd over $NOTIFY_SOCKET (sd_notify(3)); it
// does nothing when the variable is unset (not started by systemd with
// Type=notify). An address starting with "@" is in the abstract namespace,
// which Go's net package handles.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

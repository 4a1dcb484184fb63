// Package guestnet is the guest network side of prewarm-imds: the sockets
// guests reach the IMDS on, and what watches them. It knows nothing of
// HTTP or of instances; imds/server plugs it into both.
//
//   - Listen opens the device-less guest listener of an address (normally
//     169.254.169.254:80); its StartBinder keeps one more listener bound to
//     each wanted host interface (SO_BINDTODEVICE) on the same address,
//     following the devices as hypervisors create and remove them (link
//     notifications through linux/nl; a periodic check elsewhere). The
//     binder exists only through the device-less listener, so every device
//     listener is newer than it: the order SO_REUSEPORT needs (listen_linux.go).
//   - ConnLimiter bounds the open guest connections per source, of
//     registered sources and of unknown ones.
//   - PeerWatch tells when the guest behind a parked connection goes away
//     (epoll, Linux).
package guestnet

// Package imds is the root of the host metadata service prewarm-imds
// (PROTOCOL.md sections 2 and 3). The work is done by its subpackages:
//
//   - store: the durable registry, config documents and status history
//     (a small Store interface and its bbolt implementation);
//   - server: the guest API, the admin API, the publish directory and
//     metrics;
//   - client: a Go client of the admin API;
//   - cmd/prewarm-imds: the binary (serve plus the admin CLI).
package imds

// Package imds is the root of the host metadata service prewarm-imds
// (PROTOCOL.md sections 2 and 3). The work is done by its subpackages:
//
//   - server: the composition root: the in-memory index of instances, the
//     guest API (with long-poll), the admin API and the metrics;
//   - guestnet: the guest network side: the device-less guest listener and
//     the listeners it keeps bound to host interfaces (SO_BINDTODEVICE, in
//     the SO_REUSEPORT order), link and peer watch, connection limits;
//   - store: the durable registry, config documents and status history
//     (a small Store interface, its bbolt implementation, its change feed)
//     and store/etcdstore, the shared one;
//   - publishdir: the publish directory (DIR/<id>.json) watched and read;
//   - dialect: the EC2, GCE and Azure views of the same documents;
//   - client: a Go client of the admin API;
//   - cmd/prewarm-imds: the binary (serve plus the admin CLI).
package imds

package store

import bolt "go.etcd.io/bbolt"

// dropMappedTx lets go of the pages of tx's database file that the
// process has mapped: bbolt reads every page through one read-only shared
// mapping of the file, and a page read once stays in the process's RSS
// for as long as the mapping lives. A status history is 256 records spread
// over reports.db's log (each costs the kernel's fault-around, 64 KiB
// around the page), and imds.db's leaves are read by every publish and by
// Load, so without this RSS grows by what was read until the next reopen.
//
// The pages stay in the page cache (the kernel reclaims them as any file
// cache); the next read of one maps it again, a minor fault. It is safe
// while other transactions read the same pages: the mapping is read-only
// and shared, so a page dropped under a reader comes back from the cache
// with the same bytes. It must run inside a transaction of the file
// (tx holds the mapping in place: bbolt remaps only with no transaction
// open), over the pages tx can reach, all of which bbolt has mapped.
func dropMappedTx(tx *bolt.Tx) {
	dropPages(tx.DB().Info().Data, tx.Size())
}

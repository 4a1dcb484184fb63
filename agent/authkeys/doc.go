// Package authkeys edits OpenSSH authorized_keys files while owning only the
// marked block it wrote: the one rule both agents follow (docs/security.md,
// guarantee 3). Lines outside the block are kept byte for byte; a file whose
// markers do not pair up is refused, not rewritten. Linux keeps one
// [Managed] block in the user's own file; Windows names each block after
// its user ([Owned]), so several users' keys can share
// administrators_authorized_keys and a user the document no longer lists
// keeps their keys. How the file is opened, owned and protected stays with
// each OS.
package authkeys

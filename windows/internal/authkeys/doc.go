// Package authkeys edits OpenSSH authorized_keys files while owning only the
// marked blocks it wrote. Each block is named after the user whose keys it
// holds, so several users' keys can share one file (Windows'
// administrators_authorized_keys) and a user the document no longer lists
// keeps their keys. Lines outside the agent's blocks are kept byte for byte.
// The package is portable so its tests run on every OS.
package authkeys

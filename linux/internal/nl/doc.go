// Package nl holds the small rtnetlink helpers the Linux platform shares:
// finding links by name or MAC, listing, adding and removing addresses and
// routes.
package nl

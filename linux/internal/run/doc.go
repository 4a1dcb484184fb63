// Package run is a forwarding name for internal/run, the one seam through
// which both platforms run external commands, kept only for linux/network
// until that package imports internal/run itself. New code imports
// internal/run.
package run

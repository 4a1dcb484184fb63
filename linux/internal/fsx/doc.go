// Package fsx holds the Linux platform's file helpers: paths under a target
// root and atomic writes (a temporary file in the same directory, then a
// rename), so a reader never sees half a file.
package fsx

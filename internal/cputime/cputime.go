// Package cputime reads the CPU time this process has used, for the
// benchmarks that report CPU per operation (cpu-µs/op) beside wall time.
package cputime

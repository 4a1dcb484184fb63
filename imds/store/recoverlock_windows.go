package store

// lockForRecovery does nothing on Windows, where prewarm-imds is not
// served: bbolt's own lock there is a LockFileEx range this file does not
// share.
func lockForRecovery(path string) (func(), error) { return func() {}, nil }

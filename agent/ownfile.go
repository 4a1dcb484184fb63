package agent

import "errors"

// errNotOwnFile is a path where the agent expected a regular file of its
// own (the status log, the state dir's lock) and found something else: a
// symbolic link or reparse point, a FIFO or device, a hard link to a file
// elsewhere, or a file owned by another user. The agent neither writes
// through it nor changes its mode: a tenant must not be able to aim the
// agent's writes at another file.
var errNotOwnFile = errors.New("refused: not a regular file of the agent's own")

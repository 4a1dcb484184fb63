package main

// dirs are the agent's directories; defaultDirs (per OS) gives this OS's:
// the FHS places on Linux (and other Unix), %ProgramData%\Prewarm for all
// of them on Windows.
type dirs struct{ state, log, run, root string }

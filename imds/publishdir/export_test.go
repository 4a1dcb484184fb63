package publishdir

// The helpers of the internal tests, for the tests that run the directory
// inside the IMDS server (package publishdir_test).
var (
	WriteAtomic = writeAtomic
	WaitFile    = waitFile
	TestLogger  = testLogger
)

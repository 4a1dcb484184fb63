package atomicfile

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// renameTries bounds rename's retries: about 1 s of waiting in all.
const renameTries = 20

// rename is os.Rename (MoveFileEx with MOVEFILE_REPLACE_EXISTING), tried
// again while it fails with access denied or a sharing violation: Windows
// refuses to replace a file while another process holds it open (a reader
// without FILE_SHARE_DELETE, a virus scanner, the indexer; under Wine any
// reader), and such a handle is held for moments. Other errors, and the
// last try's, are returned.
func rename(from, to string) error {
	var err error
	for i := range renameTries {
		if err = os.Rename(from, to); err == nil || !transientRename(err) {
			return err
		}
		time.Sleep(time.Duration(5*(i+1)) * time.Millisecond)
	}
	return err
}

func transientRename(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_SHARING_VIOLATION)
}

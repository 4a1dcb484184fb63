package shareopen

import (
	"os"

	"golang.org/x/sys/windows"
)

// fileFlagsMask is the part of flag that carries FILE_FLAG_* bits
// (os.OpenFile takes them there too, since Go 1.24).
const fileFlagsMask = 0xFFF00000

// Open opens path like os.OpenFile with flag and perm, but shares it for
// read, write and delete (rename), so the file can be rotated while open.
// FILE_FLAG_* bits in flag's high bits (FILE_FLAG_OPEN_REPARSE_POINT) are
// passed to CreateFile. The handle is not inherited by child processes.
func Open(path string, flag int, perm os.FileMode) (*os.File, error) {
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var access uint32
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		access = windows.GENERIC_READ
	case os.O_WRONLY:
		access = windows.GENERIC_WRITE
	case os.O_RDWR:
		access = windows.GENERIC_READ | windows.GENERIC_WRITE
	}
	if flag&os.O_CREATE != 0 {
		access |= windows.GENERIC_WRITE
	}
	if flag&os.O_APPEND != 0 {
		// As os.OpenFile: every write goes to the end (FILE_APPEND_DATA
		// without FILE_WRITE_DATA), unless O_TRUNC needs the write right.
		if flag&os.O_TRUNC == 0 {
			access &^= windows.GENERIC_WRITE
		}
		access |= windows.FILE_APPEND_DATA | windows.FILE_WRITE_ATTRIBUTES | windows.FILE_WRITE_EA |
			windows.STANDARD_RIGHTS_WRITE | windows.SYNCHRONIZE
	}
	attrs := uint32(windows.FILE_ATTRIBUTE_NORMAL)
	if perm&0o200 == 0 {
		attrs = windows.FILE_ATTRIBUTE_READONLY
	}
	attrs |= uint32(flag) & fileFlagsMask
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		attrs |= windows.FILE_FLAG_BACKUP_SEMANTICS // as os.OpenFile: a directory opens for reading
	}
	var disp uint32
	switch {
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		disp = windows.CREATE_NEW
		attrs |= windows.FILE_FLAG_OPEN_REPARSE_POINT
	case flag&os.O_CREATE != 0:
		disp = windows.OPEN_ALWAYS
	default:
		disp = windows.OPEN_EXISTING
	}
	const share = windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE | windows.FILE_SHARE_DELETE
	h, err := windows.CreateFile(name, access, share, nil, disp, attrs, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(h), path)
	if flag&os.O_TRUNC != 0 {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, &os.PathError{Op: "truncate", Path: path, Err: err}
		}
	}
	return f, nil
}

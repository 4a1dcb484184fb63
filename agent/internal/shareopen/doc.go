// Package shareopen opens files the way os.OpenFile does, except that on
// Windows the file is opened with FILE_SHARE_DELETE as well as read and
// write sharing. Go's os.OpenFile shares read and write only, so while the
// agent (or a `status --follow` reader) holds the status log open, nobody
// can rename or delete it: a tenant's log rotation fails, and so does the
// agent's own rotation while a reader follows the log. With delete
// sharing the open handle keeps writing to (or reading) the renamed file,
// as on Unix. Elsewhere Open is os.OpenFile.
package shareopen

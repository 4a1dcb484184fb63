// Package sddl builds the security descriptors (in SDDL, the string form
// Windows' ConvertStringSecurityDescriptorToSecurityDescriptor reads) of the
// files and directories the Windows agent creates: its ProgramData
// directory, OpenSSH's administrators_authorized_keys and a user's
// .ssh\authorized_keys. It is portable, so the exact descriptors are unit
// tested on every OS; windows code applies them.
package sddl

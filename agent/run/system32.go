package run

import (
	"os"
	"strings"
)

// System32 returns the path of a program in Windows' system directory,
// %SystemRoot%\System32 (C:\Windows\System32 when SystemRoot is unset).
// It is portable so its test runs everywhere.
func System32(program string) string {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	return strings.TrimRight(root, `\`) + `\System32\` + program
}

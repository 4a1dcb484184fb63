package virtlab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Image is the golden image `make image` builds (packaging/image/build.sh).
type Image struct {
	Disk, Kernel, Initrd string
	// Cmdline is the kernel command line the image is made for.
	Cmdline string
}

// ImageDir is where `make image` leaves the image: $PREWARM_IMAGE_DIR, or
// .cache/image in the repository holding the current directory.
func ImageDir() string {
	if d := os.Getenv("PREWARM_IMAGE_DIR"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ".cache/image"
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, ".cache", "image")
		}
		if d == filepath.Dir(d) {
			return filepath.Join(wd, ".cache", "image")
		}
	}
}

// FindImage returns the golden image's paths (resolved, so they stay valid
// when a rebuild moves the links).
func FindImage() (Image, error) {
	dir := ImageDir()
	var im Image
	for _, f := range []struct {
		name string
		dst  *string
	}{{"debian-12-prewarm.qcow2", &im.Disk}, {"vmlinuz", &im.Kernel}, {"initrd.img", &im.Initrd}} {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, f.name))
		if err != nil {
			return Image{}, err
		}
		*f.dst = p
	}
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return Image{}, err
	}
	im.Cmdline = strings.TrimSpace(string(b))
	return im, nil
}

// RequireImage skips t when the golden image is not built.
func RequireImage(t testing.TB) Image {
	t.Helper()
	im, err := FindImage()
	if err != nil {
		t.Skipf("virtlab: no golden image in %s (make image builds it): %v", ImageDir(), err)
	}
	return im
}

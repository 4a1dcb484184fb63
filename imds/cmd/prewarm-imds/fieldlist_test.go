package main

import "testing"

func TestFieldList(t *testing.T) {
	b := fieldList{width: 12}
	b.add("instance", "vm-1")
	b.add("hostname", "")
	b.add("generation", "3")
	want := "instance:    vm-1\nhostname:    -\ngeneration:  3\n"
	if got := b.String(); got != want {
		t.Fatalf("fieldList:\n%q\nwant\n%q", got, want)
	}
}

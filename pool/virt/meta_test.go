package virt

import "testing"

func TestUnmarshalMetaWithAndWithoutNamespace(t *testing.T) {
	want := Meta{Flavor: "small", State: StateWarm, MAC: "52:54:00:aa:bb:cc", Tap: "pwt01020304", PoolNetwork: "pool", PoolIP: "10.254.0.2", Generation: 3}
	x, err := MarshalMeta(want)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"marshalled": x,
		// virDomainGetMetadata's form: the element without its namespace.
		"from libvirt": `<vm><flavor>small</flavor><state>warm</state><mac>52:54:00:aa:bb:cc</mac><tap>pwt01020304</tap>` +
			`<poolNetwork>pool</poolNetwork><poolIp>10.254.0.2</poolIp><generation>3</generation></vm>`,
		"prefixed": `<prewarm:vm xmlns:prewarm="` + MetaNS + `"><prewarm:flavor>small</prewarm:flavor><prewarm:state>warm</prewarm:state>` +
			`<prewarm:mac>52:54:00:aa:bb:cc</prewarm:mac><prewarm:tap>pwt01020304</prewarm:tap><prewarm:poolNetwork>pool</prewarm:poolNetwork>` +
			`<prewarm:poolIp>10.254.0.2</prewarm:poolIp><prewarm:generation>3</prewarm:generation></prewarm:vm>`,
	} {
		got, err := UnmarshalMeta(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want.XMLName = got.XMLName
		if got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	if _, err := UnmarshalMeta("<other/>"); err == nil {
		t.Error("an element that is not <vm> parsed")
	}
}

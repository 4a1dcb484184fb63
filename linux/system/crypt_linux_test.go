package system

import "testing"

func TestSHA512CryptVectors(t *testing.T) {
	// From Ulrich Drepper's SHA-crypt specification.
	tests := []struct {
		pw, salt string
		rounds   int
		want     string
	}{
		{"Hello world!", "saltstring", 0, "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "saltstringsaltstring", 10000, "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"This is just a test", "toolongsaltstring", 5000, "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	}
	for _, tc := range tests {
		if got := sha512Crypt(tc.pw, tc.salt, tc.rounds); got != tc.want {
			t.Errorf("sha512Crypt(%q, %q, %d) = %s, want %s", tc.pw, tc.salt, tc.rounds, got, tc.want)
		}
		if ok, err := matchSHA512(tc.pw, tc.want); !ok || err != nil {
			t.Errorf("matchSHA512(%q, %s) = %v, %v", tc.pw, tc.want, ok, err)
		}
	}
	h, err := hashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := matchSHA512("s3cret", h); !ok {
		t.Fatalf("hashPassword result %s does not verify", h)
	}
	if ok, _ := matchSHA512("other", h); ok {
		t.Fatal("wrong password verified")
	}
}

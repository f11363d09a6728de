package event

import "testing"

func TestKeys(t *testing.T) {
	tests := []struct {
		name string
		got  Key
		want Key
	}{
		{"message", MsgKey("42"), "msg:42"},
		{"plain state", StateKey("42", "viewed"), "state:42:viewed"},
		{"state with a space", StateKey("42", "not sent"), "state:42:not%20sent"},
		{"camelCase state kept", StateKey("7", "noAccount"), "state:7:noAccount"},
		{"unreserved punctuation kept", StateKey("7", "a.b_c~d-e"), "state:7:a.b_c~d-e"},
		{"utf-8 and controls escaped", StateKey("7", "é\n:/"), "state:7:%C3%A9%0A%3A%2F"},
		{"raw is sha256 hex", RawKey([]byte("abc")), "raw:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

package keyslot

import "testing"

// Expected values from the Redis Cluster specification and CLUSTER KEYSLOT.
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":       12739, // CRC16 check value 0x31C3 mod 16384
		"foo":             12182,
		"{user1000}.a":    Slot("user1000"),
		"foo{}{bar}":      Slot("foo{}{bar}"),
		"foo{{bar}}zap":   Slot("{bar"),
		"foo{bar}{zap}":   Slot("bar"),
		"renewlock:{k}:x": Slot("k"),
		"":                0,
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// Every slot has a tag, and a name with it in braces is in that slot.
func TestTag(t *testing.T) {
	for slot := range Slots {
		tag := Tag(slot)
		if got := Slot("grant:{" + tag + "}abc"); got != slot {
			t.Fatalf("Tag(%d) = %q, in slot %d", slot, tag, got)
		}
	}
}

// Package keyslot computes the Redis Cluster hash slot of a key, so that
// renewals can be batched per slot (a multi-key script must not cross slots).
package keyslot

import (
	"strconv"
	"sync"
)

// Slots is the number of hash slots in a Redis Cluster.
const Slots = 16384

// Slot returns the hash slot of key: CRC16 (XMODEM) of the hash tag if the
// key has a non-empty {tag}, else of the whole key, modulo Slots.
func Slot(key string) int {
	if s := indexByte(key, '{'); s >= 0 {
		if e := indexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) % Slots)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the variant
// Redis Cluster specifies.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var (
	tagsOnce sync.Once
	tags     []string
)

// Tag returns a short string whose slot is slot, so that "{" + Tag(slot) +
// "}" in a name puts the name in that slot (e.g. a shard channel beside a
// key). The table of all slots is built on first use (≈ 2 ms).
func Tag(slot int) string {
	tagsOnce.Do(func() {
		tags = make([]string, Slots)
		left := Slots
		for i := 0; left > 0; i++ {
			s := strconv.Itoa(i)
			if n := crc16(s) % Slots; tags[n] == "" {
				tags[n] = s
				left--
			}
		}
	})
	return tags[slot]
}

package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// uuidValid: 36 characters, hyphens at 8/13/18/23, hex digits of either case elsewhere
// (common/src/uuid.c uuid_valid).
func uuidValid(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// uuidCanon: the lower-case form of a valid UUID, or "" for anything else.
func uuidCanon(s string) string {
	if !uuidValid(s) {
		return ""
	}
	return strings.ToLower(s)
}

var uuidMu sync.Mutex
var uuidLastMs uint64
var uuidCounter uint16

// newUUID: a UUIDv7 with a 12-bit counter that keeps ids of one process strictly
// increasing within a millisecond (as common/src/uuid.c uuid_new).
func newUUID() string {
	var rnd [10]byte
	_, _ = rand.Read(rnd[:])
	seed := binary.BigEndian.Uint16(rnd[:2])
	now := uint64(time.Now().UnixMilli())
	uuidMu.Lock()
	if now > uuidLastMs {
		uuidLastMs, uuidCounter = now, seed&0x7FF
	} else if uuidCounter < 0xFFF {
		uuidCounter++
	} else {
		uuidLastMs++
		uuidCounter = seed & 0x7FF
	}
	ms, counter := uuidLastMs, uuidCounter
	uuidMu.Unlock()
	var b [16]byte
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = byte(0x70 | counter>>8)
	b[7] = byte(counter)
	copy(b[8:], rnd[2:])
	b[8] = 0x80 | b[8]&0x3F
	return uuidText(b[:])
}

func uuidText(b []byte) string {
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

func uuidBytes(s string) []byte {
	b, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	return b
}

// rfc3339us: microseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (six
// digits always, as common/src/clock.c clock_rfc3339).
func rfc3339us(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// ---- W3C traceparent (common/src/trace.c) ----

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// traceparentValid: "00-<32 hex>-<16 hex>-<2 hex>", ids not all zero.
func traceparentValid(tp string) bool {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] != "00" {
		return false
	}
	tid, sid, fl := tp[3:35], tp[36:52], tp[53:55]
	return isLowerHex(tid) && isLowerHex(sid) && isLowerHex(fl) &&
		tid != strings.Repeat("0", 32) && sid != strings.Repeat("0", 16)
}

// traceNextHop: the same trace with a new span id, or a new trace when tp is invalid.
func traceNextHop(tp string) string {
	var span [8]byte
	_, _ = rand.Read(span[:])
	if !traceparentValid(tp) {
		var tid [16]byte
		_, _ = rand.Read(tid[:])
		return "00-" + hex.EncodeToString(tid[:]) + "-" + hex.EncodeToString(span[:]) + "-01"
	}
	return tp[:36] + hex.EncodeToString(span[:]) + tp[52:]
}

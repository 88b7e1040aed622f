package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
)

// Page tokens exactly as common/include/common/page_token.h lays them out, so a
// token issued by either program is good on the other under one PAGE_TOKEN_KEY:
// version 1, flags (1: a row id follows), pos (8 bytes big-endian), [id (16)],
// scope digest (16: HMAC(key, "scope\0" kind "\0" scope)), MAC (32: HMAC(key,
// "shop page token\0" kind "\0" body)), all base64url without padding.
const (
	pageVersion = 1
	pageFlagID  = 1
	pagePosMax  = int64(253402300799999999)
	pageTextMax = 99
	pageKeyMin  = 32
	pageKeyMax  = 128
)

type pageStatus int

const (
	pageOK pageStatus = iota
	pageInvalid
	pageOther
)

// parsePageKey: 32..128 bytes as hex digits (text made only of hex digits is hex) or
// base64 of either alphabet, "=" padding optional.
func parsePageKey(text string) ([]byte, error) {
	bad := errors.New("must be 32..128 bytes written as hex digits or base64 (e.g. openssl rand -hex 32)")
	if text == "" || len(text) > 2*pageKeyMax {
		return nil, bad
	}
	var key []byte
	if len(text)%2 == 0 && isHex(text) {
		key, _ = hex.DecodeString(text)
	} else {
		s := strings.TrimRight(text, "=")
		if pad := len(text) - len(s); pad > 2 || (pad > 0 && len(text)%4 != 0) {
			return nil, bad
		}
		s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
		var err error
		if key, err = base64.RawStdEncoding.Strict().DecodeString(s); err != nil {
			return nil, bad
		}
	}
	if len(key) < pageKeyMin || len(key) > pageKeyMax {
		return nil, bad
	}
	return key, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func randomPageKey() []byte {
	k := make([]byte, pageKeyMin)
	_, _ = rand.Read(k)
	return k
}

func pageMAC(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func scopeDigest(key []byte, kind, scope string) []byte {
	return pageMAC(key, []byte("scope\x00"), []byte(kind+"\x00"), []byte(scope))[:16]
}

func bodyMAC(key []byte, kind string, body []byte) []byte {
	return pageMAC(key, []byte("shop page token\x00"), []byte(kind+"\x00"), body)
}

// encodePageToken: "" if pos is out of bounds.
func encodePageToken(key []byte, kind, scope string, pos int64, id string) string {
	if pos < 0 || pos > pagePosMax || (id != "" && !uuidValid(id)) {
		return ""
	}
	buf := make([]byte, 0, 74)
	flags := byte(0)
	if id != "" {
		flags = pageFlagID
	}
	buf = append(buf, pageVersion, flags)
	buf = binary.BigEndian.AppendUint64(buf, uint64(pos))
	if id != "" {
		buf = append(buf, uuidBytes(id)...)
	}
	buf = append(buf, scopeDigest(key, kind, scope)...)
	buf = append(buf, bodyMAC(key, kind, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

func decodePageToken(key []byte, kind, scope, token string) (pos int64, id string, st pageStatus) {
	if token == "" || len(token) > pageTextMax {
		return 0, "", pageInvalid
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(buf) < 10 || buf[0] != pageVersion || buf[1]&^pageFlagID != 0 {
		return 0, "", pageInvalid
	}
	hasID := buf[1]&pageFlagID != 0
	body := 10 + 16
	if hasID {
		body += 16
	}
	if len(buf) != body+32 {
		return 0, "", pageInvalid
	}
	if !hmac.Equal(bodyMAC(key, kind, buf[:body]), buf[body:]) {
		return 0, "", pageInvalid
	}
	if !hmac.Equal(scopeDigest(key, kind, scope), buf[body-16:body]) {
		return 0, "", pageOther
	}
	u := binary.BigEndian.Uint64(buf[2:10])
	if u > uint64(pagePosMax) {
		return 0, "", pageInvalid
	}
	if hasID {
		id = uuidText(buf[10:26])
	}
	return int64(u), id, pageOK
}

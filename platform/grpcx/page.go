package grpcx

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// pageTokenPrefix marks herald's page tokens, which carry the position of
// the last item a page held.
const pageTokenPrefix = "seq:"

// PageToken is the opaque token of a list method's next page, the page
// that starts after position seq.
func PageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.FormatInt(seq, 10)))
}

// ParsePageToken returns the position a token of [PageToken] carries, 0
// for the empty token (the first page), and false for anything else.
func ParsePageToken(tok string) (int64, bool) {
	if tok == "" {
		return 0, true
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), pageTokenPrefix) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(string(b), pageTokenPrefix), 10, 64)
	return n, err == nil && n > 0
}

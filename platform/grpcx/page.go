package grpcx

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/herald-events/herald/platform/apperr"
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

// ParsePage reads a list request's paging: the page size, def when the
// request left it 0 (its bounds are the contract's), and the position its
// page token carries. A token that [PageToken] did not make is a field
// violation of page_token naming method, which lists its tokens.
func ParsePage(size int32, token string, def int, method string) (int, int64, error) {
	n := int(size)
	if n == 0 {
		n = def
	}
	after, ok := ParsePageToken(token)
	if !ok {
		var v apperr.Violations
		v.Add("page_token", "is not a token returned by %s", method)
		return 0, 0, v.Err()
	}
	return n, after, nil
}

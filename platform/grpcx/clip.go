package grpcx

import (
	"strconv"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/herald-events/herald/platform/apperr"
)

// Bounds of what an error sends back to a client.
const (
	// maxMessageBytes bounds a status message (grpc-message).
	maxMessageBytes = 1024
	// maxViolationBytes bounds the fields and descriptions of the field
	// violations of one status (grpc-status-details-bin) together.
	maxViolationBytes = 2048
	// maxFieldBytes bounds one violation's field path, and
	// maxDescriptionBytes its description.
	maxFieldBytes       = 128
	maxDescriptionBytes = 256
)

// clip cuts s to at most n bytes, at a character boundary, and says how
// much was cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const room = 32 // for the suffix
	cut := max(n-room, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)-cut) + " bytes cut)"
}

// badRequest lists violations as details, each clipped, until
// [maxViolationBytes]; the rest are left out (the status message, clipped
// too, says that it was cut).
func badRequest(vs []apperr.FieldViolation) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	used := 0
	for _, v := range vs {
		f, d := clip(v.Field, maxFieldBytes), clip(v.Description, maxDescriptionBytes)
		if used+len(f)+len(d) > maxViolationBytes {
			break
		}
		used += len(f) + len(d)
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f, Description: d})
	}
	return br
}

package tlslayer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
)

// Reason classifies why a session failed, for a metric label.
type Reason uint8

const (
	ReasonNone             Reason = iota // no error
	ReasonTimeout                        // the handshake context's deadline passed
	ReasonEOF                            // the peer closed: close_notify, or TCP EOF (at or inside a record)
	ReasonBadRecord                      // not TLS, a malformed/oversized/undecryptable record, or an unexpected message
	ReasonHandshakeFailure               // no common version, suite, group or ALPN protocol; bad Finished or signature
	ReasonBadCertificate                 // the peer's certificate was missing, unverifiable or refused (either side)
	ReasonOverflow                       // more unconsumed ciphertext than Options.MaxBufferedInput
	ReasonClosed                         // Session.Close, or the handshake context was canceled
	ReasonOther                          // anything else (internal errors)
)

var reasonNames = [...]string{
	ReasonNone:             "none",
	ReasonTimeout:          "timeout",
	ReasonEOF:              "eof",
	ReasonBadRecord:        "bad_record",
	ReasonHandshakeFailure: "handshake_failure",
	ReasonBadCertificate:   "bad_certificate",
	ReasonOverflow:         "overflow",
	ReasonClosed:           "closed",
	ReasonOther:            "other",
}

// String returns the label: "timeout", "bad_record", ...
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "other"
}

// Error is every error a Session returns.
type Error struct {
	Reason Reason
	Op     string // "handshake", "decrypt", "encrypt", "close_notify", "feed"
	Detail string // a clarification added by this package, or ""
	Err    error  // the underlying error, usually crypto/tls's
}

func (e *Error) Error() string {
	s := "tlslayer: " + e.Op + ": " + e.Reason.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of an error from this package, ReasonNone for
// nil and ReasonOther for anything else.
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ReasonOther
}

var (
	// ErrOverflow is wrapped when ciphertext would exceed MaxBufferedInput.
	ErrOverflow = errors.New("tlslayer: too much buffered ciphertext")
	// ErrClosed is wrapped by calls on a closed Session.
	ErrClosed = errors.New("tlslayer: session closed")
	// ErrNotEstablished is returned by the established-phase calls before
	// the handshake has succeeded. The call did nothing.
	ErrNotEstablished = errors.New("tlslayer: handshake not complete")
	// ErrWriteClosed is wrapped by Encrypt after CloseNotify.
	ErrWriteClosed = errors.New("tlslayer: close_notify already sent")
)

// classify maps an error from crypto/tls (or from the shim) to a Reason.
// handshaking tells which phase it came from: the default for an
// unrecognised crypto/tls error is handshake_failure during the handshake and
// bad_record after it (every error the established read path can return is
// the peer's doing).
func classify(err error, handshaking bool) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, ErrOverflow):
		return ReasonOverflow
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed), errors.Is(err, ErrClosed):
		return ReasonClosed
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonEOF
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonBadRecord
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return ReasonBadCertificate
	}
	if a, ok := alertOf(err); ok {
		return classifyAlert(a, handshaking)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "tls: ") {
		return ReasonOther
	}
	switch {
	case strings.Contains(msg, "internal error"):
		return ReasonOther
	case strings.Contains(msg, "certificate"):
		// "client didn't provide a certificate", "failed to parse client
		// certificate", "invalid signature by the client certificate", ...
		return ReasonBadCertificate
	case handshaking:
		return ReasonHandshakeFailure
	default:
		return ReasonBadRecord
	}
}

// alertOf extracts the alert code from the errors crypto/tls returns for a
// sent or received alert: a *net.OpError with Op "local error" or "remote
// error" around the unexported type tls.alert (conn.go:733, conn.go:861), or
// an exported tls.AlertError.
func alertOf(err error) (uint8, bool) {
	if a, ok := errors.AsType[tls.AlertError](err); ok {
		return uint8(a), true
	}
	op, ok := errors.AsType[*net.OpError](err)
	if !ok || (op.Op != "local error" && op.Op != "remote error") || op.Err == nil {
		return 0, false
	}
	t := reflect.TypeOf(op.Err)
	if t.PkgPath() != "crypto/tls" || t.Name() != "alert" || t.Kind() != reflect.Uint8 {
		return 0, false
	}
	return uint8(reflect.ValueOf(op.Err).Uint()), true
}

// classifyAlert maps an alert code (RFC 8446, Section 6; RFC 5246, Section
// 7.2) to a Reason.
func classifyAlert(a uint8, handshaking bool) Reason {
	switch a {
	case 0, 90: // close_notify, user_canceled
		return ReasonEOF
	case 10, 20, 21, 22, 50: // unexpected_message, bad_record_mac, decryption_failed, record_overflow, decode_error
		return ReasonBadRecord
	case 42, 43, 44, 45, 46, 48, 116: // bad/unsupported/revoked/expired/unknown certificate, unknown_ca, certificate_required
		return ReasonBadCertificate
	case 40, 47, 49, 51, 70, 71, 86, 109, 110, 112, 120: // handshake_failure, illegal_parameter, access_denied, decrypt_error, protocol_version, insufficient_security, inappropriate_fallback, missing/unsupported extension, unrecognized_name, no_application_protocol
		return ReasonHandshakeFailure
	case 80: // internal_error
		return ReasonOther
	}
	if handshaking {
		return ReasonHandshakeFailure
	}
	return ReasonBadRecord
}

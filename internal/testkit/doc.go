// Package testkit holds the test helpers that several of frameloop's
// packages share: the frame format as a client writes and reads it, reads
// and writes bounded by deadlines, what a closed connection or a timeout
// looks like to a client, deterministic byte patterns, bounded polling,
// dialing with a deadline, and the requirement of an external tool.
//
// It is an ordinary package so that the tests of every package can import
// it, but only _test.go files may import it: no program or library code
// depends on it (TestImportedOnlyFromTests checks the module for that).
// It imports nothing of frameloop's own: not the root package, whose
// external tests import it (a cycle), and not internal/framing, whose
// encoding it must check independently, so the frame format is written out
// here as a client would write it.
//
// The rules every helper keeps:
//
//   - Nothing blocks without a deadline. Reads and writes take a timeout;
//     a timeout of 0 means "the deadline the caller has already set on the
//     connection", for callers that bound a whole exchange at once.
//   - What would be a package constant (an I/O bound, a polling interval)
//     is a parameter, so that each caller keeps its own.
//   - A helper that takes a testing.TB fails the test; its ...Err twin, where
//     one exists, returns the error for callers that decide for themselves
//     (in another goroutine, or where a failure is an expected outcome).
package testkit

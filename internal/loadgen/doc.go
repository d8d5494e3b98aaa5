// Package loadgen is "frameloop bench": a load generator for the
// length-prefixed echo protocol, built to measure servers faster than Go's
// net package without becoming the bottleneck itself.
//
// Shape: --threads workers, each a goroutine locked to an OS thread that owns
// one poller and a share of the connections (no goroutine per connection).
// A worker writes batches of frames with one write per connection per pass
// and reads into one large buffer, verifying every reply byte by byte as it
// streams past: payloads are stamped with the connection id and sequence
// number and filled with a pattern derived from them, so neither side keeps
// a copy of what was sent, and frames of any size are checked without being
// buffered. Sizes are a hash of (connection, sequence), so both directions
// can recompute them at random. The steady state allocates nothing.
//
// Frames are in any format of internal/framing (--framing): an optional
// prefix, whose bytes are also derived from (connection, sequence), a
// length field of fixed width or a varint, then the payload. The default,
// u32le, keeps a path of its own with no call into the framing package.
//
// Closed loop (default): each connection keeps --pipeline frames in flight.
// Open loop (--rate): frame k of connection c is due at a fixed intended time;
// it is sent then, or as soon as the pipeline has room, and its latency is
// measured from the intended time, so a stalled server cannot hide its stall
// by slowing the generator down (coordinated omission, as in wrk2).
package loadgen

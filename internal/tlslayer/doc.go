// Package tlslayer is the TLS record layer of one server connection as an
// object an event loop can drive: the standard library's crypto/tls,
// unmodified, over an in-memory net.Conn (the shim) that the loop feeds
// with ciphertext and empties of ciphertext.
//
// # Lifecycle
//
//	s := tlslayer.NewServer(cfg, tlslayer.Options{Notify: wakeLoop})
//	go func() { post(s.Handshake(ctx)) }()   // the only goroutine, and only until the handshake ends
//
//	// loop, handshake phase
//	pause, err := s.Feed(readBuf[:n])         // copies; pause: stop reading the socket until Notify
//	s.FeedEOF()                               // on EOF from the socket
//	queue(s.TakeOutput(nil))                  // on Notify, and when Handshake has returned
//
//	// loop, established (Handshake returned nil): never blocks
//	n, more, err := s.Decrypt(readBuf[:n], plain) // borrows readBuf; call Decrypt(nil, plain) once right after the handshake, and again while more
//	out, err = s.Encrypt(out, reply)              // pending output first, then the records
//	if s.PendingOutput() > 0 { out = s.TakeOutput(out) } // after Decrypt: a KeyUpdate reply or an alert
//	out, err = s.CloseNotify(out)                 // after the last reply
//	s.Release()                                   // when idle
//	s.Close()                                     // any goroutine; ends a running handshake
//
// # What crypto/tls (Go 1.26.8) allows, verified in its source
//
// Line numbers are those of /usr/local/go/src/crypto/tls in Go 1.26.8.
//
// "No input yet" is not sticky. readRecordOrCCS stores a read error in
// c.in.err (making it sticky) unless it is a net.Error whose Temporary
// method returns true: conn.go:633 for the record header, conn.go:678 for
// the body. The check is a type assertion, not errors.As, so the error
// must arrive unwrapped, and it does: readFromUntil (conn.go:828-839)
// passes it through bytes.Buffer.ReadFrom and atLeastReader unchanged, and
// keeps the bytes already read in c.rawInput, so the next call resumes the
// partial record. halfConn.setErrorLocked (conn.go:196-203) wraps every
// net.Error it stores in permanentError, whose Temporary is false. Read
// (conn.go:1379-1421) returns such an error as (0, err), or as (n, err)
// from its close_notify look-ahead (conn.go:1412-1417); Decrypt treats both
// as "need more input". Read calls Handshake first, which after a
// successful handshake is one atomic load (conn.go:1523).
//
// Write errors are sticky. Write stores any error of writeRecordLocked in
// c.out.err (conn.go:1248, conn.go:1255), as does a failed KeyUpdate reply
// (conn.go:1357, "surface the error at the next write"). The shim's Write
// therefore never fails (after Close it discards).
//
// What else makes a tls.Conn unusable, and how it surfaces here:
//   - Any alert crypto/tls sends, except close_notify, makes c.out.err
//     sticky (sendAlertLocked, conn.go:861): every fatal read error (bad
//     record MAC, record overflow, unexpected message, ...) also kills the
//     write side. Decrypt returns the error; the alert is in TakeOutput.
//   - Write before the handshake has completed runs the handshake
//     (conn.go:1215) and would block the loop on handshakeMutex, which the
//     handshake goroutine holds; so does Read (conn.go:1380) and
//     ConnectionState. Decrypt, Encrypt, CloseNotify and State refuse to
//     call crypto/tls before Handshake has returned nil.
//   - Write after close_notify returns errShutdown (conn.go:1231); Encrypt
//     returns ErrWriteClosed.
//   - A received close_notify sets c.in.err = io.EOF (conn.go:721), sticky
//     for reads only; crypto/tls sends nothing in reply, in TLS 1.2 as in
//     1.3. Decrypt reports ReasonEOF and Encrypt keeps working (half-close).
//     TCP EOF at a record boundary is also io.EOF (conn.go:629-631), inside
//     a record io.ErrUnexpectedEOF; the Error's Detail tells the cases apart.
//   - A received fatal alert is a sticky *net.OpError "remote error"
//     (conn.go:733, conn.go:740).
//   - Post-handshake handshake messages (handlePostHandshakeMessage,
//     conn.go:1305-1332): in TLS 1.3 a KeyUpdate is handled, and if the
//     client asks for an update crypto/tls writes its own KeyUpdate record
//     during Read and switches keys (handleKeyUpdate, conn.go:1334-1371);
//     a NewSessionTicket from a client or any other message is refused with
//     unexpected_message. In TLS 1.2 any handshake message goes to
//     handleRenegotiation (conn.go:1259-1302): a server refuses
//     renegotiation; a ClientHello gets unexpected_message (conn.go:1271).
//     Some of these errors are returned without being stored in c.in.err
//     (conn.go:1331); the Session makes every non-EOF read error sticky
//     itself. More than 16 consecutive records that carry no application
//     data are refused (conn.go:796, conn.go:1315).
//   - Writes crypto/tls makes that the loop did not ask for: during the
//     handshake, the flights, and in TLS 1.3 the one NewSessionTicket (sent
//     inside the handshake: with the server's first flight, or after the
//     client's certificate when one is requested,
//     handshake_server_tls13.go:926-933 and :1112; TLS 1.2 tickets are part
//     of the handshake too, handshake_server.go:86 and :116); after it, only
//     a KeyUpdate reply and alerts, both during Decrypt. The loop checks
//     PendingOutput after Decrypt; Encrypt and CloseNotify prepend pending
//     output, which keeps a KeyUpdate reply ahead of records under the new
//     key.
//
// close_notify. CloseWrite (conn.go:1463-1469) refuses before the handshake
// has completed, then closeNotify (conn.go:1471-1484) sets a write deadline
// on the transport, writes one alert record through sendAlertLocked, marks
// closeNotifySent and sets a deadline again. It is identical in TLS 1.2 and
// 1.3, does not wait for the peer's close_notify and does not close or
// half-close the transport. Through the shim it touches nothing else and
// cannot block. tls.Conn.Close would also close the shim; the Session never
// calls it.
//
// Handshake cancellation. HandshakeContext registers context.AfterFunc to
// close the transport when the context ends (conn.go:1536-1546) and then
// returns ctx.Err(); closing the shim wakes a blocked Read. Handshake adds
// Options.HandshakeTimeout to the context, and Close cancels it as well as
// closing the shim, so that callbacks honouring ClientHelloInfo.Context
// return too. A callback that ignores its context can still hold the
// handshake goroutine.
//
// # Bounds
//
// Input the session holds that crypto/tls has not pulled is bounded by
// Options.MaxBufferedInput plus one read: Feed reports pause at the bound and
// refuses input from a loop that ignores it. crypto/tls holds the rest:
// the record being assembled, whose header it checks against the maximum
// (16 KiB + 2 KiB in TLS 1.2, 16 KiB + 256 in 1.3) before reading the body
// (conn.go:672), and one handshake message (64 KiB, 256 KiB for a
// Certificate, conn.go:1100-1115). The shim hands crypto/tls one record at a
// time, so c.rawInput never holds more than one record.
//
// # Allocations and memory
//
// Encrypt allocates nothing when dst has room (outBufPool serves
// writeRecordLocked's scratch buffer). Decrypt allocates one 24-byte
// atLeastReader per record (conn.go:837: passed to bytes.Buffer.ReadFrom as
// an io.Reader, it escapes); Decrypt calls Read only when the shim holds
// enough for progress, so it pays no allocation for a Read that finds
// nothing.
//
// An idle session still holds what crypto/tls keeps and cannot be told to
// drop: the tls.Conn (872 bytes), two AEAD states, the traffic secrets,
// c.rawInput and c.hand (bytes.Buffers sized by the largest record and
// handshake message seen: the ClientHello, about 1.5 KB with a TLS 1.3
// hybrid key share, or a 16 KiB record), and the parsed peer certificates.
// Release drops only the shim's buffers. BenchmarkIdleMemory reports the figures.
package tlslayer

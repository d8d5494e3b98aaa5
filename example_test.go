package frameloop_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/frameloop/frameloop"
)

// upper answers each frame with its payload in upper case.
type upper struct{}

func (upper) OnOpen(c *frameloop.Conn) {}

func (upper) OnFrame(c *frameloop.Conn, payload []byte) {
	// payload is only valid during this call; Write copies it.
	c.Write(bytes.ToUpper(payload))
}

func (upper) OnClose(c *frameloop.Conn, err error) {}

func Example() {
	cfg := frameloop.DefaultConfig()
	cfg.Addr = "127.0.0.1:0" // any free port
	cfg.Loops = 1
	srv, err := frameloop.New(upper{}, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())

	// A client: a 4-byte little-endian length, then the payload.
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write(binary.LittleEndian.AppendUint32(nil, 5))
	c.Write([]byte("hello"))

	var hdr [4]byte
	io.ReadFull(c, hdr[:])
	reply := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
	io.ReadFull(c, reply)
	fmt.Println(string(reply))
	// Output: HELLO
}

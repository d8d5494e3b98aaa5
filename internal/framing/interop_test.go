package framing_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/frameloop/frameloop/internal/framing"
)

// messages returns protobuf messages whose encodings straddle the varint
// size boundaries: empty, 1 byte, around 127/128 and 16383/16384 bytes.
func messages(t *testing.T) []*structpb.Value {
	t.Helper()
	var out []*structpb.Value
	out = append(out, &structpb.Value{}) // encodes to zero bytes
	for _, n := range []int{0, 1, 100, 123, 124, 125, 126, 127, 128, 200, 16379, 16380, 16381, 16382, 70000} {
		out = append(out, structpb.NewStringValue(strings.Repeat("x", n)))
	}
	s, err := structpb.NewStruct(map[string]any{"name": "frameloop", "n": 42, "tags": []any{"a", true, nil, 1.5}})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, structpb.NewStructValue(s), structpb.NewNumberValue(-0.25), structpb.NewBoolValue(true))
	return out
}

// TestProtodelimInterop decodes length-delimited protobuf messages written
// by google.golang.org/protobuf/encoding/protodelim with the varint preset,
// and the other way round.
func TestProtodelimInterop(t *testing.T) {
	msgs := messages(t)
	sizes := map[int]bool{}
	var stream bytes.Buffer
	for _, m := range msgs {
		if _, err := protodelim.MarshalTo(&stream, m); err != nil {
			t.Fatal(err)
		}
		sizes[proto.Size(m)] = true
	}
	for _, n := range []int{0, 127, 128, 16383, 16384} {
		if !sizes[n] {
			t.Fatalf("no message encodes to %d bytes; sizes: %v", n, sizes)
		}
	}
	spec, _ := framing.ParseSpec("varint")
	f := mustNew(t, spec, 1<<20)

	buf := stream.Bytes()
	for i, m := range msgs {
		n, h, _, err := f.Next(buf)
		if err != nil || n == 0 {
			t.Fatalf("message %d: Next = %d, %v", i, n, err)
		}
		got := new(structpb.Value)
		if err := proto.Unmarshal(buf[h:n], got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(got, m) {
			t.Fatalf("message %d: got %v, want %v", i, got, m)
		}
		buf = buf[n:]
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left", len(buf))
	}

	// Our encoder, protodelim's decoder.
	var ours []byte
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if ours, err = f.Append(ours, nil, b); err != nil {
			t.Fatal(err)
		}
	}
	// Not byte for byte: protobuf map order is not deterministic.
	if len(ours) != stream.Len() {
		t.Errorf("Append wrote %d bytes, protodelim %d", len(ours), stream.Len())
	}
	r := bufio.NewReader(bytes.NewReader(ours))
	for i, m := range msgs {
		got := new(structpb.Value)
		if err := protodelim.UnmarshalFrom(r, got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(got, m) {
			t.Fatalf("message %d: got %v, want %v", i, got, m)
		}
	}
}

// TestProtodelimTooLarge checks that both sides reject the same oversized
// message: the size is judged from the varint alone.
func TestProtodelimTooLarge(t *testing.T) {
	var stream bytes.Buffer
	m := structpb.NewStringValue(strings.Repeat("y", 1000))
	if _, err := protodelim.MarshalTo(&stream, m); err != nil {
		t.Fatal(err)
	}
	size := proto.Size(m)
	spec, _ := framing.ParseSpec("varint")
	for _, max := range []int{size - 1, size} {
		f := mustNew(t, spec, max)
		_, _, _, err := f.Next(stream.Bytes()[:3]) // header and a little body
		ref := protodelim.UnmarshalOptions{MaxSize: int64(max)}.UnmarshalFrom(bufio.NewReader(bytes.NewReader(stream.Bytes())), new(structpb.Value))
		if (err == framing.ErrTooLarge) != (ref != nil) {
			t.Errorf("max %d: Next error %v, protodelim error %v", max, err, ref)
		}
	}
}

package framing_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
)

const V = framing.LengthVarint

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want framing.Spec
	}{
		{"u32le", framing.Spec{Length: 4}},
		{"u32be", framing.Spec{Length: 4, BigEndian: true}},
		{"u16be", framing.Spec{Length: 2, BigEndian: true}},
		{"u16le", framing.Spec{Length: 2}},
		{"u8", framing.Spec{Length: 1}},
		{"u24be", framing.Spec{Length: 3, BigEndian: true}},
		{"u24le", framing.Spec{Length: 3}},
		{"u64be", framing.Spec{Length: 8, BigEndian: true}},
		{"varint", framing.Spec{Length: V, VarintMax: 5}},
		{"mqtt", framing.Spec{Offset: 1, Length: V, VarintMax: 4}},
		{"grpc", framing.Spec{Offset: 1, Length: 4, BigEndian: true}},
		{"mysql", framing.Spec{Length: 3, Adjust: 1}},
		{" u8 ", framing.Spec{Length: 1}},
		{"length=4", framing.Spec{Length: 4, BigEndian: true}}, // order defaults to be
		{"length=4,order=le", framing.Spec{Length: 4}},
		{"order=le", framing.Spec{Length: 4}},
		{"offset=0", framing.Spec{Length: 4, BigEndian: true}},
		{"length=8,order=le", framing.Spec{Length: 8}},
		{"length=1,order=be", framing.Spec{Length: 1}}, // order ignored
		{"length=varint,order=be", framing.Spec{Length: V, VarintMax: 5}},
		{"length=varint,varint-max=10", framing.Spec{Length: V, VarintMax: 10}},
		{"varint-max=1,length=varint", framing.Spec{Length: V, VarintMax: 1}},
		{"offset = 1, length=4 ,order=be, adjust=-4", framing.Spec{Offset: 1, Length: 4, BigEndian: true, Adjust: -4}},
		{"offset=16,adjust=+1048576", framing.Spec{Offset: 16, Length: 4, BigEndian: true, Adjust: 1 << 20}},
		{"adjust=-1048576", framing.Spec{Length: 4, BigEndian: true, Adjust: -1 << 20}},
		{"length=3,order=le,adjust=-1048576", framing.Spec{Length: 3, Adjust: -1 << 20}},
	}
	for _, tt := range tests {
		got, err := framing.ParseSpec(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "framing: empty spec (want a preset such as u32le, or key=value pairs)"},
		{"  ", "framing: empty spec"},
		{"lenght=4", `framing: unknown key "lenght" (keys: length, order, offset, adjust, varint-max)`},
		{"length=5", `framing: length must be 1, 2, 3, 4, 8 or varint, got "5"`},
		{"length=", `framing: length must be 1, 2, 3, 4, 8 or varint, got ""`},
		{"length=04", `framing: length must be 1, 2, 3, 4, 8 or varint, got "04"`},
		{"length=4,length=2", `framing: duplicate key "length"`},
		{"order=le,order=le", `framing: duplicate key "order"`},
		{"order=little", `framing: order must be le or be, got "little"`},
		{"offset=17", `framing: offset must be 0 to 16, got "17"`},
		{"offset=-1", `framing: offset must be 0 to 16, got "-1"`},
		{"offset=x", `framing: offset must be 0 to 16, got "x"`},
		{"adjust=1048577", `framing: adjust must be from -1048576 to 1048576, got "1048577"`},
		{"adjust=99999999999999999999", `framing: adjust must be from -1048576 to 1048576, got "99999999999999999999"`},
		{"adjust=1.5", `framing: adjust must be from -1048576 to 1048576, got "1.5"`},
		{"length=varint,varint-max=0", `framing: varint-max must be 1 to 10, got "0"`},
		{"length=varint,varint-max=11", `framing: varint-max must be 1 to 10, got "11"`},
		{"varint-max=4", `framing: varint-max applies only to length=varint, got length=4`},
		{"length=2,varint-max=4", `framing: varint-max applies only to length=varint, got length=2`},
		{"length=1,adjust=-256", `framing: adjust -256 makes every body negative: the length field holds at most 255`},
		{"length=varint,varint-max=1,adjust=-128", `framing: adjust -128 makes every body negative: the length field holds at most 127`},
		{"u33", `framing: unknown preset "u33" (presets: grpc, mqtt, mysql, u16be, u16le, u24be, u24le, u32be, u32le, u64be, u8, varint)`},
		{"U32LE", `framing: unknown preset "U32LE"`},
		{"mysql,offset=1", `framing: "mysql" is not key=value (a preset must stand alone)`},
		{"length=4,,order=le", `framing: empty item in "length=4,,order=le"`},
		{"length=4,", `framing: empty item`},
		{"=4", `framing: unknown key "" (keys:`},
		{"lenght=4,lenght=4", `framing: unknown key "lenght"`},
	}
	for _, tt := range tests {
		_, err := framing.ParseSpec(tt.in)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSpec(%q) error = %v; want %q", tt.in, err, tt.want)
		}
	}
}

func TestPresets(t *testing.T) {
	names := framing.Presets()
	if !slices.IsSorted(names) || len(names) != 12 {
		t.Fatalf("Presets() = %v", names)
	}
	for _, name := range names {
		s, err := framing.ParseSpec(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != name {
			t.Errorf("ParseSpec(%q).String() = %q", name, got)
		}
	}
	if got := (framing.Spec{}).String(); got != "u32le" {
		t.Errorf("zero Spec is %q, want u32le", got)
	}
}

// normal is the Spec as a Format reports it, which is what String promises
// ParseSpec gives back.
func normal(t *testing.T, s framing.Spec) framing.Spec {
	t.Helper()
	f, err := framing.New(s, framing.MaxBody)
	if err != nil {
		t.Fatalf("New(%+v): %v", s, err)
	}
	return f.Spec()
}

func TestStringRoundTrip(t *testing.T) {
	specs := []framing.Spec{
		{},
		{BigEndian: true},
		{Length: 1, BigEndian: true},
		{Length: 8},
		{Length: 3, BigEndian: true, Adjust: 1},
		{Offset: 1, Length: 4, BigEndian: true, Adjust: -4},
		{Offset: 16, Length: 2, Adjust: -65535},
		{Length: V},
		{Length: V, VarintMax: 5, BigEndian: true},
		{Length: V, VarintMax: 10, Offset: 3, Adjust: 7},
		{Length: V, VarintMax: 4}, // mqtt without its prefix
		{Offset: 1, Length: V, VarintMax: 4},
		{Length: 4, Adjust: framing.MaxAdjust},
		{Length: 4, Adjust: -framing.MaxAdjust},
	}
	for _, name := range framing.Presets() {
		s, _ := framing.ParseSpec(name)
		specs = append(specs, s)
	}
	for _, s := range specs {
		str := s.String()
		got, err := framing.ParseSpec(str)
		if want := normal(t, s); err != nil || got != want {
			t.Errorf("%+v.String() = %q, which parses to %+v, %v; want %+v", s, str, got, err, want)
		}
	}
	if got := (framing.Spec{Offset: 1, Length: 4, BigEndian: true, Adjust: -4}).String(); got != "length=4,order=be,offset=1,adjust=-4" {
		t.Errorf("String = %q", got)
	}
	if got := (framing.Spec{Length: V, VarintMax: 3}).String(); got != "length=varint,varint-max=3" {
		t.Errorf("String = %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		spec framing.Spec
		max  int
		want string
	}{
		{framing.Spec{Offset: -1}, 10, "framing: offset must be 0 to 16, got -1"},
		{framing.Spec{Offset: 17}, 10, "framing: offset must be 0 to 16, got 17"},
		{framing.Spec{Length: 5}, 10, "framing: length must be 1, 2, 3, 4, 8 or varint, got 5"},
		{framing.Spec{Length: -2}, 10, "framing: length must be 1, 2, 3, 4, 8 or varint, got -2"},
		{framing.Spec{Length: V, VarintMax: 11}, 10, "framing: varint-max must be 1 to 10, got 11"},
		{framing.Spec{Length: V, VarintMax: -1}, 10, "framing: varint-max must be 1 to 10, got -1"},
		{framing.Spec{Length: 4, VarintMax: 5}, 10, "framing: varint-max applies only to length=varint, got length=4"},
		{framing.Spec{Adjust: framing.MaxAdjust + 1}, framing.MaxBody, "framing: adjust must be from -1048576 to 1048576, got 1048577"},
		{framing.Spec{Adjust: -framing.MaxAdjust - 1}, 10, "framing: adjust must be from -1048576 to 1048576, got -1048577"},
		{framing.Spec{Length: 2, Adjust: -65536}, 10, "framing: adjust -65536 makes every body negative: the length field holds at most 65535"},
		{framing.Spec{}, -1, "framing: max body must be 0 to 1073741824 bytes, got -1"},
		{framing.Spec{}, framing.MaxBody + 1, "framing: max body must be 0 to 1073741824 bytes, got 1073741825"},
		{framing.Spec{Length: 3, Adjust: 1}, 0, "framing: adjust 1 makes every body larger than the maximum 0"},
	}
	for _, tt := range tests {
		f, err := framing.New(tt.spec, tt.max)
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v, %d) = %v, %v; want error %q", tt.spec, tt.max, f, err, tt.want)
		}
	}
	// The edges of every range are accepted.
	for _, s := range []framing.Spec{
		{Offset: 16}, {Length: 2, Adjust: -65535}, {Length: V, VarintMax: 1}, {Length: V, VarintMax: 10},
		{Adjust: framing.MaxAdjust}, {Adjust: -framing.MaxAdjust}, {Length: 1, Adjust: -255},
	} {
		if _, err := framing.New(s, framing.MaxBody); err != nil {
			t.Errorf("New(%+v): %v", s, err)
		}
	}
	if _, err := framing.New(framing.Spec{Length: 3, Adjust: 1}, 1); err != nil {
		t.Errorf("mysql with max 1: %v", err)
	}
}

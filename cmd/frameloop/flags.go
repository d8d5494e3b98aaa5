package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/frameloop/frameloop"
)

// newFlagSet returns a flag set that reports errors instead of printing
// usage: a bad value gets one line, not a dump of every flag. Go's flag
// package already accepts the GNU forms --name value and --name=value.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args and turns the flag package's messages into one
// line in the GNU spelling. It returns flag.ErrHelp for --help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: "):
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag provided but not defined: "), "-")
		return fmt.Errorf("unknown flag --%s", name)
	case strings.HasPrefix(msg, "flag needs an argument: "):
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag needs an argument: "), "-")
		return fmt.Errorf("flag --%s needs a value", name)
	}
	msg = strings.ReplaceAll(msg, "for flag -", "for --")
	return errors.New(strings.ReplaceAll(msg, "\n", " "))
}

// printDefaults writes the flags in the GNU spelling.
func printDefaults(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%-18s %s%s\n", f.Name, f.Usage, def)
	})
}

// intFlag is an integer flag with a range, checked as it is parsed.
func intFlag(fs *flag.FlagSet, name string, def, lo, hi int, usage string) *int {
	v := def
	fs.Func(name, usage, func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		v = n
		return nil
	})
	setDefault(fs, name, strconv.Itoa(def))
	return &v
}

// maxDuration bounds duration flags, as the library bounds its timeouts.
const maxDuration = 100 * 365 * 24 * time.Hour

// durationFlag is a non-negative Go duration flag; 0 disables.
func durationFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	v := def
	fs.Func(name, usage, func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxDuration {
			return errors.New("want a duration such as 1500ms, 2s or 1m, at most 876000h (0 disables)")
		}
		v = d
		return nil
	})
	setDefault(fs, name, def.String())
	return &v
}

// choiceFlag is a string flag limited to the given values, which its help
// line lists.
func choiceFlag(fs *flag.FlagSet, name, def string, choices []string, usage string) *string {
	v := def
	fs.Func(name, usage+": "+orList(choices), func(s string) error {
		for _, c := range choices {
			if s == c {
				v = s
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(choices, ", "))
	})
	setDefault(fs, name, def)
	return &v
}

// orList spells choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

func setDefault(fs *flag.FlagSet, name, def string) {
	fs.Lookup(name).DefValue = def
}

// sizeFlag is a byte count: a whole number with an optional KiB, MiB or
// GiB suffix, from lo to hi bytes.
func sizeFlag(fs *flag.FlagSet, name string, def, lo, hi int64, usage string) *int64 {
	v := def
	fs.Func(name, usage, func(s string) error {
		n, err := parseSize(s)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want a size in bytes from %s to %s, such as 65536, 512KiB, 8MiB or 1GiB", formatSize(lo), formatSize(hi))
		}
		v = n
		return nil
	})
	setDefault(fs, name, formatSize(def))
	return &v
}

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}}

func parseSize(s string) (int64, error) {
	shift := uint(0)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = num, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, errors.New("bad size")
	}
	return n << shift, nil
}

// formatSize spells n with the largest suffix that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// framingFlag is a framing description (frameloop.ParseFraming), checked
// as it is parsed: a bad one is the flag's one-line error.
func framingFlag(fs *flag.FlagSet, name, usage string) *frameloop.Framing {
	var v frameloop.Framing
	fs.Func(name, usage, func(s string) error {
		f, err := frameloop.ParseFraming(s)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "framing: "))
		}
		v = f
		return nil
	})
	setDefault(fs, name, "u32le")
	return &v
}

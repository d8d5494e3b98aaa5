package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The kernel's side of an idle connection: while S4 holds its connections
// the suite samples /proc/net/sockstat and /proc/slabinfo (readable by
// root only), and keeps the growth of the slab caches that grew by about
// one object per connection or more: TCP sockets, their inodes, dentries
// and files, epoll items. Both ends of every connection are on this
// machine, so the growth is divided by the sockets opened (about twice the
// connections) to give a figure per socket, which is the server's share
// if both ends cost alike (the generator watches its sockets with epoll
// too).

// KernelMem is the kernel memory an idle run added.
type KernelMem struct {
	Conns    int          // connections the run held
	Sockets  int          // growth of "TCP: inuse" in /proc/net/sockstat
	MemPages int          // growth of "TCP: mem": pages of socket buffers
	Slab     []SlabGrowth // caches that grew by at least half an object per connection, largest first
	SlabErr  string       // why /proc/slabinfo could not be read, if it could not
}

// SlabGrowth is one slab cache's growth.
type SlabGrowth struct {
	Name    string
	Objs    int    // growth of the objects in use counted as the sockets'
	ObjSize int    // bytes per object
	Note    string // why some or all of the growth is not counted
	Grown   int    // growth of the objects in use, all of it
}

// perProcInode are caches that hold one object for every inode, /proc
// inodes included: their growth less that of proc_inode_cache is the
// sockets'.
var perProcInode = map[string]string{
	"dentry":          "dentries",
	"lsm_inode_cache": "security blobs",
}

// notSockets are caches that grow with descriptors but are not the
// sockets' memory: whoever lists /proc/PID/fd (a process monitor) makes a
// /proc inode, and a dentry, per descriptor listed; mappings grow with
// the processes' heaps.
var notSockets = map[string]string{
	"proc_inode_cache": "inodes of /proc/PID/fd entries, made by whatever lists a process's descriptors; not the sockets'",
	"anon_vma_chain":   "process memory mappings; not the sockets'",
	"anon_vma":         "process memory mappings; not the sockets'",
	"vm_area_struct":   "process memory mappings; not the sockets'",
}

// Bytes is the memory the growth takes.
func (g SlabGrowth) Bytes() int { return g.Objs * g.ObjSize }

// SlabBytes is the memory counted as the sockets'.
func (k *KernelMem) SlabBytes() int {
	n := 0
	for _, g := range k.Slab {
		n += g.Bytes()
	}
	return n
}

// BufferPerSocket is the growth of the TCP buffer pages ("TCP: mem", 4 KiB
// pages) per socket opened, in bytes, or 0 when unknown.
func (k *KernelMem) BufferPerSocket() float64 {
	if k == nil || k.Sockets <= 0 {
		return 0
	}
	return float64(k.MemPages) * 4096 / float64(k.Sockets)
}

// PerSocket is the slab memory per socket opened, or 0 when unknown.
func (k *KernelMem) PerSocket() float64 {
	if k == nil || k.Sockets <= 0 || k.SlabErr != "" {
		return 0
	}
	return float64(k.SlabBytes()) / float64(k.Sockets)
}

// kernelSnap is one look at the kernel's socket figures.
type kernelSnap struct {
	tcpInuse, tcpMem int
	slabs            map[string]slabLine
	slabErr          error
}

type slabLine struct{ objs, size int }

const (
	sockstatPath = "/proc/net/sockstat"
	slabinfoPath = "/proc/slabinfo"
)

// readSockstat returns the "TCP: inuse N ... mem M" figures.
func readSockstat(path string) (inuse, mem int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		inuse, mem = -1, -1
		for i := 1; i+1 < len(f); i += 2 {
			v, err := strconv.Atoi(f[i+1])
			if err != nil {
				continue
			}
			switch f[i] {
			case "inuse":
				inuse = v
			case "mem":
				mem = v
			}
		}
		if inuse >= 0 && mem >= 0 {
			return inuse, mem, nil
		}
	}
	return 0, 0, fmt.Errorf("%s: no TCP line with inuse and mem", path)
}

// readSlabinfo parses /proc/slabinfo (version 2.x): name, active_objs,
// num_objs, objsize, ... It keeps the objects in use (active_objs): a
// cache keeps the objects an earlier run freed (num_objs does not fall),
// and a new run reuses them without num_objs growing.
func readSlabinfo(path string) (map[string]slabLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]slabLine{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "slabinfo") || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		objs, err1 := strconv.Atoi(f[1])
		size, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		out[f[0]] = slabLine{objs: objs, size: size}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no caches listed", path)
	}
	return out, nil
}

func takeKernelSnap(withSlabs bool) (kernelSnap, error) {
	var k kernelSnap
	var err error
	if k.tcpInuse, k.tcpMem, err = readSockstat(sockstatPath); err != nil {
		return k, err
	}
	if withSlabs {
		k.slabs, k.slabErr = readSlabinfo(slabinfoPath)
	}
	return k, nil
}

// kernelDelta is what after adds to before, for conns connections.
func kernelDelta(before, after kernelSnap, conns int) *KernelMem {
	k := &KernelMem{Conns: conns, Sockets: after.tcpInuse - before.tcpInuse, MemPages: after.tcpMem - before.tcpMem}
	switch {
	case before.slabErr != nil:
		k.SlabErr = before.slabErr.Error()
		return k
	case after.slabErr != nil:
		k.SlabErr = after.slabErr.Error()
		return k
	}
	grown := func(name string) int { return after.slabs[name].objs - before.slabs[name].objs }
	for name, a := range after.slabs {
		d := grown(name)
		if 2*d < conns || d <= 0 {
			continue
		}
		g := SlabGrowth{Name: name, Objs: d, ObjSize: a.size, Grown: d}
		if why, ok := notSockets[name]; ok {
			g.Objs, g.Note = 0, why
		} else if what, ok := perProcInode[name]; ok {
			// Every /proc inode made meanwhile came with one of these.
			if p := grown("proc_inode_cache"); p > 0 {
				g.Objs = max(0, d-p)
				g.Note = fmt.Sprintf("less the %d %s of the /proc inodes", min(p, d), what)
			}
		}
		k.Slab = append(k.Slab, g)
	}
	slices.SortFunc(k.Slab, func(x, y SlabGrowth) int {
		if d := y.Bytes() - x.Bytes(); d != 0 {
			return d
		}
		return strings.Compare(x.Name, y.Name)
	})
	return k
}

// kernelSampler samples the kernel's figures until stopped, keeping the
// look at which the most TCP sockets were in use: the idle connections
// all open.
type kernelSampler struct {
	before kernelSnap
	peak   kernelSnap
	err    error
	stop   chan struct{}
	wg     sync.WaitGroup
}

// kernelSampleEvery is how often the sampler looks.
const kernelSampleEvery = 200 * time.Millisecond

// settleWait bounds the wait for the sockets of the last measurement to
// be gone before the baseline is read.
const settleWait = 3 * time.Second

func startKernelSampler() (*kernelSampler, error) {
	// The previous server's connections may still be closing: wait until
	// the count of TCP sockets stops falling.
	last, _, err := readSockstat(sockstatPath)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(settleWait); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n, _, err := readSockstat(sockstatPath)
		if err != nil {
			return nil, err
		}
		if n >= last {
			break
		}
		last = n
	}
	before, err := takeKernelSnap(true)
	if err != nil {
		return nil, err
	}
	ks := &kernelSampler{before: before, peak: before, stop: make(chan struct{})}
	ks.wg.Go(func() {
		t := time.NewTicker(kernelSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ks.stop:
				return
			case <-t.C:
			}
			inuse, _, err := readSockstat(sockstatPath)
			if err != nil {
				ks.err = err
				return
			}
			if inuse <= ks.peak.tcpInuse {
				continue
			}
			if snap, err := takeKernelSnap(true); err == nil && snap.tcpInuse > ks.peak.tcpInuse {
				ks.peak = snap
			}
		}
	})
	return ks, nil
}

// finish stops sampling and returns the growth at the peak.
func (ks *kernelSampler) finish(conns int) (*KernelMem, error) {
	close(ks.stop)
	ks.wg.Wait()
	if ks.err != nil {
		return nil, ks.err
	}
	return kernelDelta(ks.before, ks.peak, conns), nil
}

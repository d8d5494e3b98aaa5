package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sockstatText = `sockets: used 2019
TCP: inuse 2009 orphan 0 tw 14382 alloc 2009 mem 1595
UDP: inuse 0 mem 0
`

const slabinfoBefore = `slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                  100    104   2368   13    8 : tunables    0    0    0 : slabdata      8      8      0
sock_inode_cache     200    210    832   19    4 : tunables    0    0    0 : slabdata     11     11      0
kmalloc-192          900   1000    192   21    1 : tunables    0    0    0 : slabdata     48     48      0
filp                 500    520    192   21    1 : tunables    0    0    0 : slabdata     25     25      0
`

const slabinfoAfter = `slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                 2100   2104   2368   13    8 : tunables    0    0    0 : slabdata    162    162      0
sock_inode_cache    2200   2210    832   19    4 : tunables    0    0    0 : slabdata    117    117      0
kmalloc-192         1000   1100    192   21    1 : tunables    0    0    0 : slabdata     52     52      0
filp                1000   1020    192   21    1 : tunables    0    0    0 : slabdata     49     49      0
eventpoll_epi       2000   2016    128   32    1 : tunables    0    0    0 : slabdata     63     63      0
proc_inode_cache     800    800    696   23    4 : tunables    0    0    0 : slabdata     35     35      0
dentry              2800   2800    192   21    1 : tunables    0    0    0 : slabdata    134    134      0
lsm_inode_cache     2900   2900     32  128    1 : tunables    0    0    0 : slabdata     23     23      0
`

func TestKernelMem(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inuse, mem, err := readSockstat(write("sockstat", sockstatText))
	if err != nil || inuse != 2009 || mem != 1595 {
		t.Errorf("sockstat: %d %d %v", inuse, mem, err)
	}
	if _, _, err := readSockstat(write("bad", "TCP: nothing\n")); err == nil {
		t.Error("sockstat without figures: no error")
	}
	before, err := readSlabinfo(write("slab0", slabinfoBefore))
	if err != nil || before["TCP"] != (slabLine{objs: 100, size: 2368}) {
		t.Fatalf("slabinfo: %v %v", before, err)
	}
	after, err := readSlabinfo(write("slab1", slabinfoAfter))
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 connections, 2,000 sockets: TCP, inodes and epoll items grew
	// by one per socket, filp by half of one per connection (kept), and
	// kmalloc-192 by a tenth (left out as noise). Something listed 800
	// descriptors in /proc: their inodes and dentries are not counted.
	k := kernelDelta(kernelSnap{tcpInuse: 2009, tcpMem: 10, slabs: before}, kernelSnap{tcpInuse: 4009, tcpMem: 12, slabs: after}, 1000)
	if k.Sockets != 2000 || k.MemPages != 2 || len(k.Slab) != 7 {
		t.Fatalf("delta %+v", k)
	}
	if k.Slab[0] != (SlabGrowth{Name: "TCP", Objs: 2000, ObjSize: 2368, Grown: 2000}) {
		t.Errorf("order: %+v", k.Slab)
	}
	for _, g := range k.Slab {
		switch g.Name {
		case "proc_inode_cache":
			if g.Objs != 0 || g.Grown != 800 || g.Note == "" {
				t.Errorf("/proc inodes counted: %+v", g)
			}
		case "dentry":
			if g.Objs != 2000 || g.Grown != 2800 || !strings.Contains(g.Note, "800 dentries") {
				t.Errorf("dentries of /proc inodes counted: %+v", g)
			}
		case "lsm_inode_cache":
			if g.Objs != 2100 || g.Grown != 2900 || !strings.Contains(g.Note, "800 security blobs") {
				t.Errorf("security blobs of /proc inodes counted: %+v", g)
			}
		}
	}
	if got := k.BufferPerSocket(); got != 2*4096.0/2000 {
		t.Errorf("buffer pages per socket %v", got)
	}
	want := float64(2000*2368+2000*832+2000*128+500*192+2000*192+2100*32) / 2000
	if got := k.PerSocket(); got != want {
		t.Errorf("per socket %v, want %v", got, want)
	}
	k = kernelDelta(kernelSnap{slabErr: os.ErrPermission}, kernelSnap{tcpInuse: 10}, 5)
	if k.SlabErr == "" || k.PerSocket() != 0 {
		t.Errorf("unreadable slabinfo: %+v", k)
	}
}

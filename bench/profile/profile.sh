#!/usr/bin/env bash
# profile.sh — where does a server spend its CPU per message? The recipe
# behind bench/PROFILE.md.
#
#   bench/profile/profile.sh OUTDIR [SERVERS] [SCENARIOS]
#
# SERVERS: space-separated, of frameloop c net gnet nbio (default
# "frameloop c"); SCENARIOS of S1 S2 S3 S5-100 S5-1000 S5-10000 S6
# (default "S1 S2 S3 S5-100 S5-10000"; S6 here is S2's load at S6_RATE, see
# below). For each server and scenario it runs the server pinned to CPU 0
# (GOMAXPROCS=1, one loop) and `frameloop bench` pinned to CPU 1, as the
# suite does, three times:
#
#   stat   perf stat -e task-clock,context-switches,cpu-migrations,page-faults
#          and syscall tracepoints on the server for WINDOW seconds of the
#          steady state: counts per message;
#   record perf record -g -e cpu-clock on the server (user and kernel
#          stacks), then perf report --no-children --sort symbol (and by
#          dso, and with callers for the top symbols);
#   sizes  perf record of the read/write/writev exits: bytes per call.
#
# Messages in a window are the bytes the server read in it (rchar in
# /proc/PID/io, read at both ends of the window by the command perf stat
# runs) divided by the frame size: every scenario's frames have one size.
# Syscall counts in the summary are per message; "syscalls" lines of the
# children report (ksys_write, ksys_read, __x64_sys_epoll_pwait, ...) give
# the share of the CPU spent under each system call. It needs root (or
# perf_event_paranoid <= 1 and readable tracepoints), perf, taskset, cc and
# go. Run it on a quiet machine: it measures CPU time.
set -euo pipefail

out=${1:?usage: profile.sh OUTDIR [SERVERS] [SCENARIOS]}
servers=${2:-frameloop c}
scenarios=${3:-S1 S2 S3 S5-100 S5-10000}
window=${WINDOW:-4}        # seconds profiled
reps=${REPS:-3}            # stat runs per server and scenario
settle=${SETTLE:-3}        # seconds after the generator starts (connect + warmup)
s6rate=${S6_RATE:-1500000} # S6 here: a fixed rate (the suite uses half of S2's)

here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
root=$(dirname "$bench")
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$out/bin
mkdir -p "$bin"

ulimit -n "$(ulimit -Hn)"

echo "building into $bin" >&2
(cd "$root" && go build -o "$bin/frameloop" ./cmd/frameloop)
(cd "$bench" && go build -o "$bin/peer" ./cmd/peer)
cc -O2 -Wall -o "$bin/cserver" "$bench/cserver/echo.c"

# Syscalls counted. epoll_pwait is Go's and the C server's wait; the
# others show the runtime's threads (futex, nanosleep, signals) and memory.
syscalls="read write writev readv epoll_wait epoll_pwait epoll_pwait2 epoll_ctl futex nanosleep clock_nanosleep sched_yield tgkill rt_sigreturn madvise mmap munmap getpid"
events="task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter"
for s in $syscalls; do
	if perf list "syscalls:sys_enter_$s" 2>/dev/null | grep -q "sys_enter_$s"; then
		events="$events,syscalls:sys_enter_$s"
	fi
done

frame_size() { # scenario → bytes per frame, header included
	case $1 in
	S3) echo 4004 ;;
	*) echo 68 ;;
	esac
}

load_args() { # scenario → generator flags
	case $1 in
	S1) echo "--conns 100 --pipeline 1 --size 64" ;;
	S2) echo "--conns 100 --pipeline 32 --size 64" ;;
	S3) echo "--conns 8 --pipeline 8 --size 4000" ;;
	S5-*) echo "--conns ${1#S5-} --pipeline 16 --size 64 --rate 100000" ;;
	S6) echo "--conns 100 --pipeline 32 --size 64 --rate $s6rate" ;;
	*) echo "unknown scenario $1" >&2; exit 2 ;;
	esac
}

server_cmd() { # server port → command line
	case $1 in
	frameloop) echo "$bin/frameloop serve --loops 1 --max-conns 20000 --idle-timeout 0 --addr 127.0.0.1:$2" ;;
	c) echo "$bin/cserver --addr 127.0.0.1:$2" ;;
	net | gnet | nbio) echo "$bin/peer --impl $1 --loops 1 --addr 127.0.0.1:$2" ;;
	*) echo "unknown server $1" >&2; exit 2 ;;
	esac
}

port=$((10000 + RANDOM % 20000)) # below the ephemeral range

# free_port moves port on to one nothing listens on.
free_port() {
	port=$((port + 1))
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
}

# one SERVER SCENARIO MODE: runs the pair and, in the steady state, the
# perf command of MODE on the server.
one() {
	local srv=$1 sc=$2 mode=$3 tag=$out/$1.$2${4:-}
	free_port
	local log=$tag.$mode.server.log
	# shellcheck disable=SC2046
	GOMAXPROCS=1 taskset -c 0 $(server_cmd "$srv" $port) >"$log" 2>&1 &
	local spid=$!
	for _ in $(seq 200); do grep -qs listening "$log" && break; sleep 0.05; done
	if ! grep -qs listening "$log"; then
		echo "$srv did not start: $(cat "$log")" >&2
		exit 1
	fi
	# shellcheck disable=SC2046
	taskset -c 1 "$bin/frameloop" bench --json --threads 1 --server-pid $spid --addr 127.0.0.1:$port \
		$(load_args "$sc") --warmup 2s --duration $((settle + window + 1 - 2))s >"$tag.$mode.gen.json" &
	local gpid=$!
	sleep "$settle"
	case $mode in
	stat) perf stat -x, -e "$events" -p $spid -o "$tag.stat.csv" -- \
		sh -c "grep rchar /proc/$spid/io >'$tag.io0'; sleep $window; grep rchar /proc/$spid/io >'$tag.io1'" ;;
	record) perf record -q -g -e cpu-clock -p $spid -o "$tag.perf.data" -- sleep "$window" 2>/dev/null ;;
	sizes) perf record -q -e 'syscalls:sys_exit_read,syscalls:sys_exit_write,syscalls:sys_exit_writev' \
		-p $spid -o "$tag.sizes.data" -- sleep 1 2>/dev/null ;;
	esac
	wait $gpid || echo "$srv $sc $mode: generator exit $?" >&2
	kill -TERM $spid 2>/dev/null || true
	wait $spid 2>/dev/null || true
}

rchar() { awk '{print $2}' "$1"; }

for sc in $scenarios; do
	for srv in $servers; do
		echo "== $srv $sc" >&2
		for r in $(seq "$reps"); do
			one "$srv" "$sc" stat ".$r"
		done
		for mode in record sizes; do
			one "$srv" "$sc" "$mode"
		done
		tag=$out/$srv.$sc
		perf report -i "$tag.perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.3 \
			>"$tag.report.txt" 2>/dev/null
		perf report -i "$tag.perf.data" --no-children --sort dso --stdio -g none >"$tag.dso.txt" 2>/dev/null
		perf report -i "$tag.perf.data" --no-children --sort symbol --stdio -g caller,0.5,callee,function,percent \
			--percent-limit 2 >"$tag.callers.txt" 2>/dev/null
		# Inclusive shares: the time under each system call, the runtime's
		# entry points, the engine's functions.
		perf report -i "$tag.perf.data" --children --sort symbol --stdio -g none --percent-limit 0.2 2>/dev/null |
			grep -E '__x64_sys_|ksys_|do_softirq|exit_to_user_mode_loop|asm_sysvec|\] schedule$|\[\.\] ' >"$tag.children.txt" || true
		perf script -i "$tag.sizes.data" -F event,trace 2>/dev/null |
			awk 'function hex(s,  i, v) { v = 0; s = tolower(s)
			       for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
			       return v }
			     { ev=$1; sub(":$","",ev); r=$NF
			       if (r ~ /^0x/) { v = hex(substr(r, 3)) } else { v = r + 0 }
			       if (v > 0 && v < 1e12) { n[ev]++; b[ev]+=v } else { z[ev]++ } }
			     END { for (e in n) printf "%s calls %d bytes %.0f mean %.0f (and %d returning <= 0)\n", e, n[e], b[e], b[e]/n[e], z[e] }' \
			>"$tag.sizes.txt"
		# Per message, from the stat runs.
		: >"$tag.summary.txt"
		for r in $(seq "$reps"); do
			bytes=$(($(rchar "$tag.$r.io1") - $(rchar "$tag.$r.io0")))
			awk -F, -v bytes="$bytes" -v fs="$(frame_size "$sc")" -v w="$window" -v tag="$srv $sc run $r" '
				BEGIN { msgs = bytes / fs; printf "%s: %.0f msgs/s, %.0f msgs (%.0f bytes read) in the %ss window\n", tag, msgs/w, msgs, bytes, w }
				$1 ~ /^[0-9.]+$/ { name=$3; v=$1
					if (name == "task-clock") printf "  %-32s %12.0f ms  %8.1f ns/msg  (%.2f CPUs)\n", name, v, v*1e6/msgs, v/1000/w
					else if (v > 0) printf "  %-32s %12.0f      %8.4f /msg\n", name, v, v/msgs }' \
				"$tag.$r.stat.csv" | tee -a "$tag.summary.txt"
		done
		cat "$tag.sizes.txt" | sed 's/^/  /' | tee -a "$tag.summary.txt"
	done
done
echo "done: $out/*.summary.txt, *.report.txt, *.callers.txt" >&2

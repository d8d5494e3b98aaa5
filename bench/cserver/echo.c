/*
 * echo.c: the lower bound for the bench suite. A minimal echo server for
 * frameloop's protocol (a 4-byte little-endian length N, then N payload
 * bytes; every frame is answered with the identical bytes, in order),
 * written the plain fast way in C:
 *
 *   - one thread, one level-triggered epoll set, non-blocking sockets;
 *   - per ready descriptor, one read(2) into the connection's own buffer,
 *     then one write(2) of every complete frame straight from that buffer
 *     (no copy: the echo is the input);
 *   - an unfinished frame stays in the buffer for the next read;
 *   - a short write or EAGAIN keeps the unsent bytes in the buffer and
 *     arms EPOLLOUT instead of EPOLLIN until they are sent (so a client
 *     that does not read its replies is not read from either);
 *   - a header announcing more than --max-message bytes closes the
 *     connection once the replies to the frames before it are sent; so
 *     does the peer's end of stream (after the replies) and any error.
 *
 * Closing shuts the write side first and reads (discarding) until the peer
 * closes too: close(2) with unread input would send a reset, which can
 * destroy replies the peer has not read yet.
 *
 * Usage: cserver [--addr host:port] [--max-message N]
 * It prints a line containing "listening" on stderr when ready, and exits
 * with status 0 on SIGTERM or SIGINT.
 *
 * Build: cc -O2 -o cserver echo.c (the suite does this; nothing is checked in).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	BUF_SIZE = 64 << 10, /* a connection's buffer, and so the largest read */
	MAX_EVENTS = 1024,
	HDR = 4,
	ACCEPT_RETRY_MS = 10, /* pause after EMFILE and the like */
};

struct conn {
	int fd;
	uint32_t events; /* what epoll watches for this connection */
	char *buf;       /* NULL until the first read */
	size_t cap;
	size_t len;      /* bytes in buf */
	size_t sent;     /* buf[sent:done) are replies not yet written */
	size_t done;     /* buf[done:len) is the unfinished frame */
	int closing;     /* end of stream or oversize: close once sent */
	int eof;         /* the peer has sent everything */
	int lingering;   /* write side shut: discard input until the peer closes */
};

static int epfd;
static size_t max_message = 1 << 20;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what)
{
	fprintf(stderr, "cserver: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void watch(struct conn *c, uint32_t events)
{
	if (c->events == events)
		return;
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
	c->events = events;
}

static void drop(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
}

/* finish is called once every reply of a closing connection is sent. */
static void finish(struct conn *c)
{
	if (c->eof || shutdown(c->fd, SHUT_WR) < 0) {
		drop(c);
		return;
	}
	c->lingering = 1;
	c->len = c->sent = c->done = 0;
	watch(c, EPOLLIN | EPOLLRDHUP);
}

/* flush writes buf[sent:done) and moves the unfinished frame to the front
 * once everything is sent. It returns 0 if the connection was dropped. */
static int flush(struct conn *c)
{
	while (c->sent < c->done) {
		ssize_t n = write(c->fd, c->buf + c->sent, c->done - c->sent);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				watch(c, EPOLLOUT);
				return 1;
			}
			drop(c);
			return 0;
		}
		c->sent += (size_t)n;
		if (c->sent < c->done) { /* short write: the socket is full */
			watch(c, EPOLLOUT);
			return 1;
		}
	}
	size_t tail = c->len - c->done;
	if (tail > 0 && c->done > 0)
		memmove(c->buf, c->buf + c->done, tail);
	c->len = tail;
	c->sent = c->done = 0;
	if (c->closing) {
		finish(c);
		return 0;
	}
	watch(c, EPOLLIN | EPOLLRDHUP);
	return 1;
}

/* frames advances done over the complete frames in buf[done:len). On an
 * oversized header it drops the rest of the input and marks the connection
 * closing. It grows the buffer when the unfinished frame cannot fit. */
static void frames(struct conn *c)
{
	while (c->len - c->done >= HDR) {
		const unsigned char *h = (const unsigned char *)c->buf + c->done;
		size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
		if (n > max_message) {
			c->len = c->done;
			c->closing = 1;
			return;
		}
		if (c->len - c->done < HDR + n) {
			/* Unfinished. After the flush it will start at offset 0. */
			if (HDR + n > c->cap) {
				size_t cap = c->cap * 2 > HDR + n ? c->cap * 2 : HDR + n;
				char *b = realloc(c->buf, cap);
				if (!b)
					die("realloc");
				c->buf = b;
				c->cap = cap;
			}
			return;
		}
		c->done += HDR + n;
	}
}

static void readable(struct conn *c)
{
	if (!c->buf) {
		c->buf = malloc(BUF_SIZE);
		if (!c->buf)
			die("malloc");
		c->cap = BUF_SIZE;
	}
	char *dst = c->buf + c->len;
	size_t room = c->cap - c->len;
	if (c->lingering) {
		dst = c->buf;
		room = c->cap;
	}
	ssize_t n = read(c->fd, dst, room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		drop(c);
		return;
	}
	if (n == 0 || c->lingering) {
		if (n == 0) {
			if (c->lingering) {
				drop(c);
				return;
			}
			/* End of stream: answer what is complete, then close. */
			c->closing = c->eof = 1;
			c->len = c->done;
			flush(c);
		}
		return;
	}
	c->len += (size_t)n;
	frames(c);
	flush(c);
}

static void writable(struct conn *c) { flush(c); }

static int listener(const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof host) {
		fprintf(stderr, "cserver: --addr %s: want host:port\n", addr);
		exit(2);
	}
	const char *h = addr;
	size_t hl = (size_t)(colon - addr);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai;
	int rc = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "cserver: --addr %s: %s\n", addr, gai_strerror(rc));
		exit(2);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	if (listen(fd, SOMAXCONN) < 0)
		die("listen");
	freeaddrinfo(ai);

	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char nh[NI_MAXHOST], np[NI_MAXSERV];
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, nh, sizeof nh, np, sizeof np, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		die("getsockname");
	fprintf(stderr, ss.ss_family == AF_INET6 ? "cserver listening on [%s]:%s\n" : "cserver listening on %s:%s\n", nh, np);
	fflush(stderr);
	return fd;
}

/* accept_all accepts until EAGAIN. On running out of descriptors or memory
 * it returns 0: the caller stops watching the listener for a moment. */
static int accept_all(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
				return 1;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				return 0;
			default:
				die("accept4");
			}
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			return 0;
		}
		c->fd = fd;
		c->events = EPOLLIN | EPOLLRDHUP;
		struct epoll_event ev = {.events = c->events, .data.ptr = c};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr, "usage: cserver [--addr host:port] [--max-message N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1:5882";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] == '-')
			a++; /* --flag and -flag alike */
		if (i + 1 < argc && strcmp(a, "-addr") == 0) {
			addr = argv[++i];
		} else if (i + 1 < argc && strcmp(a, "-max-message") == 0) {
			char *end;
			unsigned long long v = strtoull(argv[++i], &end, 10);
			if (*end || v > 0x7ffffffbULL)
				usage();
			max_message = (size_t)v;
		} else {
			usage();
		}
	}

	/* SIGTERM and SIGINT are blocked except inside epoll_pwait, so one that
	 * comes while the loop is busy ends the next wait at once. */
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	int lfd = listener(addr);
	static int listen_tag; /* the listener's epoll data: its address */
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listen_tag};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
		die("epoll_ctl");
	int accept_paused = 0;
	long long resume_at = 0; /* when a paused listener is watched again */

	struct epoll_event evs[MAX_EVENTS];
	while (!stop) {
		int n = epoll_pwait(epfd, evs, MAX_EVENTS, accept_paused ? ACCEPT_RETRY_MS : -1, &waitmask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_pwait");
		}
		if (accept_paused && now_ms() >= resume_at) {
			lev.events = EPOLLIN;
			epoll_ctl(epfd, EPOLL_CTL_MOD, lfd, &lev);
			accept_paused = 0;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			uint32_t e = evs[i].events;
			if (p == &listen_tag) {
				if (!accept_all(lfd)) {
					lev.events = 0;
					epoll_ctl(epfd, EPOLL_CTL_MOD, lfd, &lev);
					accept_paused = 1;
					resume_at = now_ms() + ACCEPT_RETRY_MS;
				}
				continue;
			}
			struct conn *c = p;
			if (c->events & EPOLLOUT) {
				if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
					writable(c);
			} else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
				readable(c);
			}
		}
	}
	return 0;
}

/*
 * loadgen: a closed-loop load generator for MagicQueue's newline-JSON TCP protocol (and a small
 * HTTP/1.1 keep-alive mode for the REST gateway).
 *
 * Why C: the server under test is Python on trio; a Python client would need about as much CPU
 * per request as the server and would share the same two cores, so the figures would measure the
 * client. This program spends a few microseconds of CPU per request (it reports its own CPU so the
 * report can show it is not the bottleneck).
 *
 * Theory of operation. One thread, one epoll set, N non-blocking connections. Each connection
 * runs a tiny state machine with exactly one request in flight (closed loop): it writes a request,
 * waits for the reply line, checks it, records the latency, then writes the next one. The
 * per-connection quota is the total split evenly. The timed phase starts once every connection
 * is established and ends when the last one has finished its quota.
 *
 * Modes (the "unit" is what ops/s counts):
 *   push      PUSH one job per request                          unit = job
 *   pushb     PUSHB of -b jobs per request                      unit = job (latency per request)
 *   cycle     PUSH, PULL (blocking), ACK of the pulled id       unit = cycle (latency per cycle)
 *   drain     PULLB count=-b, then ACKB of the ids in the reply unit = acked job (latency per pair)
 *   getstate  untimed prep: PUSHB -n jobs (1,000 per request) and keep their ids; then GETSTATE
 *             each id once                                      unit = request
 *   http_push POST /queues/Q/jobs {"data":...}                  unit = request
 *   http_pull GET /queues/Q/jobs?count=1&timeout=0              unit = request (jobs counted)
 *
 * Ids are parsed with a tiny scan rather than a JSON parser: a job on the wire always starts with
 * `{"id":` (the contract keeps `id` first), replies to PUSHB/ACKB carry `"ids":[...]`, and the
 * bench's payload never contains those byte sequences.
 *
 * CPU: /proc/<pid>/stat utime+stime of every -W pid and getrusage() of this process are read at
 * the start and the end of the timed phase, so the report shows where the time went.
 *
 * Time budget (-B): once it has passed, each connection stops at its next unit boundary; the
 * figures then cover the units done ("units" < "requested", "budget_hit": true). The deadline
 * (-T) is different: passing it is a failure (a server that stopped answering).
 *
 * Output: one JSON object on stdout. Exit status 0 on success, 1 when any request failed or the
 * deadline (-T) passed (the JSON still says what happened), 2 on bad usage or setup failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_PUSH, M_PUSHB, M_CYCLE, M_DRAIN, M_GETSTATE, M_HTTP_PUSH, M_HTTP_PULL };

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

typedef struct {
    int fd;
    int idx;
    const char *queue;
    buf_t w;       /* pending output */
    size_t woff;   /* bytes of w already written */
    buf_t r;       /* input not yet consumed */
    long quota;    /* units this connection must complete */
    long done;     /* units completed */
    int step;      /* position in a multi-request unit (cycle, drain) */
    int finished;
    uint64_t t0;   /* start of the unit being timed */
    long long id;  /* cycle: the pulled job's id */
    long long *ids; /* drain: ids of the last PULLB; getstate: the prepared ids */
    long nids, capids;
    long seq;      /* payload counter, so every job's data differs */
} conn_t;

static enum mode g_mode;
static const char *g_host = "127.0.0.1";
static int g_port = 6789;
static int g_conns = 1;
static long g_total = 1000;
static int g_batch = 1000;
static double g_deadline_s = 120.0;
static double g_budget_s = 0;     /* -B: stop starting new units after this long (0 = never) */
static uint64_t g_budget_end;     /* absolute time, set when the timed phase starts */
static int g_budget_hit;
static char **g_queues;
static int g_nqueues;
static int g_watch[64];
static int g_nwatch;

static uint64_t *g_lat;
static size_t g_nlat, g_caplat;
static long g_errors;
static char g_first_error[512];
static long g_requests;
static long g_empty_pulls; /* http_pull: replies with no job */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory (%zu bytes)", n);
    return q;
}

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + extra + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
}

static void buf_add(buf_t *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap > b->len ? b->cap - b->len : 0;
        va_start(ap, fmt);
        int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) die("vsnprintf failed");
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        buf_reserve(b, (size_t)n + 1);
    }
}

static void record_latency(uint64_t ns) {
    if (g_nlat == g_caplat) {
        g_caplat = g_caplat ? g_caplat * 2 : 65536;
        g_lat = xrealloc(g_lat, g_caplat * sizeof *g_lat);
    }
    g_lat[g_nlat++] = ns;
}

static void note_error(const conn_t *c, const char *what, const char *line, size_t n) {
    g_errors++;
    if (!g_first_error[0]) {
        if (n > 300) n = 300;
        snprintf(g_first_error, sizeof g_first_error, "conn %d: %s: %.*s", c->idx, what, (int)n,
                 line ? line : "");
    }
}

/* ------------------------------------------------------------------ request builders */

static void add_payload(buf_t *b, conn_t *c) {
    /* ~35 bytes of JSON, different for every job */
    buf_printf(b, "{\"n\":%ld,\"to\":\"user@example.com\"}", c->seq++);
}

static void build_next(conn_t *c) {
    buf_t *w = &c->w;
    switch (g_mode) {
    case M_PUSH:
        buf_printf(w, "{\"cmd\":\"PUSH\",\"queue\":\"%s\",\"data\":", c->queue);
        add_payload(w, c);
        buf_add(w, "}\n", 2);
        break;
    case M_PUSHB: {
        long left = (c->quota - c->done);
        long n = left < g_batch ? left : g_batch;
        buf_printf(w, "{\"cmd\":\"PUSHB\",\"queue\":\"%s\",\"jobs\":[", c->queue);
        for (long i = 0; i < n; i++) {
            buf_add(w, i ? ",{\"data\":" : "{\"data\":", i ? 9 : 8);
            add_payload(w, c);
            buf_add(w, "}", 1);
        }
        buf_add(w, "]}\n", 3);
        break;
    }
    case M_CYCLE:
        if (c->step == 0) {
            buf_printf(w, "{\"cmd\":\"PUSH\",\"queue\":\"%s\",\"data\":", c->queue);
            add_payload(w, c);
            buf_add(w, "}\n", 2);
        } else if (c->step == 1) {
            buf_printf(w, "{\"cmd\":\"PULL\",\"queue\":\"%s\"}\n", c->queue);
        } else {
            buf_printf(w, "{\"cmd\":\"ACK\",\"id\":%lld}\n", c->id);
        }
        break;
    case M_DRAIN:
        if (c->step == 0) {
            long left = c->quota - c->done;
            long n = left < g_batch ? left : g_batch;
            buf_printf(w, "{\"cmd\":\"PULLB\",\"queue\":\"%s\",\"count\":%ld}\n", c->queue, n);
        } else {
            buf_add(w, "{\"cmd\":\"ACKB\",\"ids\":[", 21);
            for (long i = 0; i < c->nids; i++) buf_printf(w, i ? ",%lld" : "%lld", c->ids[i]);
            buf_add(w, "]}\n", 3);
        }
        break;
    case M_GETSTATE:
        buf_printf(w, "{\"cmd\":\"GETSTATE\",\"id\":%lld}\n", c->ids[c->done % c->nids]);
        break;
    case M_HTTP_PUSH: {
        buf_t body = {0};
        buf_add(&body, "{\"data\":", 8);
        add_payload(&body, c);
        buf_add(&body, "}", 1);
        buf_printf(w,
                   "POST /queues/%s/jobs HTTP/1.1\r\nHost: %s:%d\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   c->queue, g_host, g_port, body.len);
        buf_add(w, body.p, body.len);
        free(body.p);
        break;
    }
    case M_HTTP_PULL:
        buf_printf(w, "GET /queues/%s/jobs?count=1&timeout=0 HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                   c->queue, g_host, g_port);
        break;
    }
    g_requests++;
}

/* ------------------------------------------------------------------ reply scanning */

static int reply_ok(const char *line, size_t n) {
    /* every success reply starts with {"ok":true */
    return n >= 10 && memcmp(line, "{\"ok\":true", 10) == 0;
}

static const char *find(const char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

static void push_id(conn_t *c, long long id) {
    if (c->nids == c->capids) {
        c->capids = c->capids ? c->capids * 2 : 1024;
        c->ids = xrealloc(c->ids, (size_t)c->capids * sizeof *c->ids);
    }
    c->ids[c->nids++] = id;
}

/* append every `{"id":N` of a PULLB reply to c->ids */
static void scan_job_ids(conn_t *c, const char *line, size_t n) {
    const char *p = line, *end = line + n;
    while ((p = find(p, (size_t)(end - p), "{\"id\":")) != NULL) {
        p += 6;
        push_id(c, strtoll(p, NULL, 10));
    }
}

/* the integers of `"ids":[a,b,...]`; returns how many, -1 when absent */
static long scan_ids_array(conn_t *c, const char *line, size_t n, int keep) {
    const char *p = find(line, n, "\"ids\":[");
    if (!p) return -1;
    p += 7;
    long count = 0;
    while (*p && *p != ']') {
        char *q;
        long long v = strtoll(p, &q, 10);
        if (q == p) return -1;
        if (keep) push_id(c, v);
        else count = (long)v;
        count += keep;
        p = q;
        if (*p == ',') p++;
    }
    return count;
}

/* handle one reply; returns 1 when the connection should send another request */
static int on_reply(conn_t *c, const char *line, size_t n, int http_status) {
    uint64_t t = now_ns();
    switch (g_mode) {
    case M_PUSH:
    case M_GETSTATE:
        if (!reply_ok(line, n)) note_error(c, "error reply", line, n);
        record_latency(t - c->t0);
        c->done++;
        break;
    case M_PUSHB: {
        long left = c->quota - c->done;
        long sent = left < g_batch ? left : g_batch;
        if (!reply_ok(line, n)) note_error(c, "error reply", line, n);
        record_latency(t - c->t0);
        c->done += sent;
        break;
    }
    case M_CYCLE:
        if (!reply_ok(line, n)) {
            note_error(c, c->step == 0 ? "PUSH" : c->step == 1 ? "PULL" : "ACK", line, n);
            c->step = 0; /* start a fresh cycle; the unit still counts against the quota */
            c->done++;
            break;
        }
        if (c->step == 1) {
            const char *p = find(line, n, "\"job\":{\"id\":");
            if (!p) {
                note_error(c, "PULL reply without a job", line, n);
                c->step = 0;
                c->done++;
                break;
            }
            c->id = strtoll(p + 12, NULL, 10);
        }
        if (c->step == 2) {
            record_latency(t - c->t0);
            c->done++;
            c->step = 0;
        } else {
            c->step++;
        }
        break;
    case M_DRAIN:
        if (!reply_ok(line, n)) {
            note_error(c, c->step == 0 ? "PULLB" : "ACKB", line, n);
            return 0; /* cannot know what was pulled: stop this connection */
        }
        if (c->step == 0) {
            c->nids = 0;
            scan_job_ids(c, line, n);
            if (c->nids == 0) {
                note_error(c, "PULLB returned no jobs", line, n);
                return 0;
            }
            c->step = 1;
        } else {
            long acked = scan_ids_array(c, line, n, 0);
            if (acked != c->nids) note_error(c, "ACKB acked a different count", line, n);
            record_latency(t - c->t0);
            c->done += acked > 0 ? acked : c->nids;
            c->step = 0;
        }
        break;
    case M_HTTP_PUSH:
    case M_HTTP_PULL:
        if (http_status < 200 || http_status > 299) {
            char what[64];
            snprintf(what, sizeof what, "HTTP %d", http_status);
            note_error(c, what, line, n);
        } else if (g_mode == M_HTTP_PULL && find(line, n, "\"data\":[]")) {
            g_empty_pulls++;
        }
        record_latency(t - c->t0);
        c->done++;
        break;
    }
    if (c->done >= c->quota) return 0;
    /* a time budget ends a connection at a unit boundary: the figures cover whole units */
    if (g_budget_end && c->step == 0 && t > g_budget_end) {
        g_budget_hit = 1;
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ sockets */

static int connect_one(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (inet_pton(AF_INET, g_host, &a.sin_addr) != 1) die("bad host %s", g_host);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect %s:%d: %s", g_host, g_port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl: %s", strerror(errno));
}

/* blocking request/reply on a still-blocking socket (prep phase only) */
static void call_blocking(conn_t *c, buf_t *req, buf_t *reply) {
    size_t off = 0;
    while (off < req->len) {
        ssize_t k = write(c->fd, req->p + off, req->len - off);
        if (k < 0) die("prep write: %s", strerror(errno));
        off += (size_t)k;
    }
    reply->len = 0;
    for (;;) {
        buf_reserve(reply, 65536);
        ssize_t k = read(c->fd, reply->p + reply->len, 65536);
        if (k <= 0) die("prep read: %s", k ? strerror(errno) : "connection closed");
        reply->len += (size_t)k;
        reply->p[reply->len] = 0;
        if (memchr(reply->p, '\n', reply->len)) return;
    }
}

static void prep_getstate(conn_t *c) {
    buf_t req = {0}, rep = {0};
    long left = c->quota;
    while (left > 0) {
        long n = left < 1000 ? left : 1000;
        req.len = 0;
        buf_printf(&req, "{\"cmd\":\"PUSHB\",\"queue\":\"%s\",\"jobs\":[", c->queue);
        for (long i = 0; i < n; i++) {
            buf_add(&req, i ? ",{\"data\":" : "{\"data\":", i ? 9 : 8);
            add_payload(&req, c);
            buf_add(&req, "}", 1);
        }
        buf_add(&req, "]}\n", 3);
        call_blocking(c, &req, &rep);
        if (!reply_ok(rep.p, rep.len)) die("prep PUSHB failed: %.300s", rep.p);
        long before = c->nids;
        scan_ids_array(c, rep.p, rep.len, 1);
        if (c->nids - before != n) die("prep PUSHB returned %ld ids for %ld jobs", c->nids - before, n);
        left -= n;
    }
    free(req.p);
    free(rep.p);
}

/* try to write what is pending; returns 0 when all written, 1 when the socket is full */
static int flush_out(conn_t *c) {
    while (c->woff < c->w.len) {
        ssize_t k = write(c->fd, c->w.p + c->woff, c->w.len - c->woff);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            if (errno == EINTR) continue;
            die("write on conn %d: %s", c->idx, strerror(errno));
        }
        c->woff += (size_t)k;
    }
    c->w.len = 0;
    c->woff = 0;
    return 0;
}

static int g_epfd;

static void send_next(conn_t *c) {
    if (!(g_mode == M_CYCLE && c->step != 0) && !(g_mode == M_DRAIN && c->step != 0))
        c->t0 = now_ns();
    build_next(c);
    if (flush_out(c)) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* HTTP: is a whole response in r? returns its total length (0 if not yet), status and body */
static size_t http_complete(buf_t *r, int *status, const char **body, size_t *blen) {
    const char *hend = find(r->p, r->len, "\r\n\r\n");
    if (!hend) return 0;
    size_t hlen = (size_t)(hend - r->p) + 4;
    if (r->len < 12 || memcmp(r->p, "HTTP/1.", 7) != 0) die("not an HTTP response: %.200s", r->p);
    *status = atoi(r->p + 9);
    long clen = -1;
    for (const char *p = r->p; p < hend;) {
        const char *eol = find(p, (size_t)(hend - p) + 2, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    if (clen < 0) die("HTTP response without Content-Length (chunked replies are not supported)");
    if (r->len < hlen + (size_t)clen) return 0;
    *body = r->p + hlen;
    *blen = (size_t)clen;
    return hlen + (size_t)clen;
}

static void on_readable(conn_t *c) {
    for (;;) {
        buf_reserve(&c->r, 65536);
        ssize_t k = read(c->fd, c->r.p + c->r.len, c->r.cap - c->r.len - 1);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            die("read on conn %d: %s", c->idx, strerror(errno));
        }
        if (k == 0) {
            note_error(c, "connection closed by the server", "", 0);
            c->finished = 1;
            epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
            return;
        }
        c->r.len += (size_t)k;
        c->r.p[c->r.len] = 0;
    }
    for (;;) {
        size_t used;
        int more;
        if (g_mode == M_HTTP_PUSH || g_mode == M_HTTP_PULL) {
            int status = 0;
            const char *body = NULL;
            size_t blen = 0;
            used = http_complete(&c->r, &status, &body, &blen);
            if (!used) return;
            more = on_reply(c, body, blen, status);
        } else {
            char *nl = memchr(c->r.p, '\n', c->r.len);
            if (!nl) return;
            used = (size_t)(nl - c->r.p) + 1;
            more = on_reply(c, c->r.p, used - 1, 0);
        }
        memmove(c->r.p, c->r.p + used, c->r.len - used);
        c->r.len -= used;
        c->r.p[c->r.len] = 0;
        if (more) {
            send_next(c);
        } else {
            c->finished = 1;
            epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
            return;
        }
    }
}

/* ------------------------------------------------------------------ CPU accounting */

static double proc_cpu_s(int pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ")": state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* whole machine, from the first line of /proc/stat: busy = all but idle and iowait (seconds) */
static void machine_cpu_s(double *busy, double *total) {
    unsigned long long v[10] = {0};
    *busy = *total = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return;
    unsigned long long all = 0;
    for (int i = 0; i < 8; i++) all += v[i]; /* guest time is already inside user */
    double hz = (double)sysconf(_SC_CLK_TCK);
    *total = (double)all / hz;
    *busy = (double)(all - v[3] - v[4]) / hz;
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ main */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double p) {
    if (!g_nlat) return 0;
    size_t i = (size_t)(p * (double)(g_nlat - 1) + 0.5);
    return (double)g_lat[i] / 1000.0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE [-h host] [-p port] [-c conns] [-n total] [-b batch]\n"
            "               [-q queue,queue,...] [-W pid,pid,...] [-T deadline_s] [-B budget_s]\n"
            "MODE: push pushb cycle drain getstate http_push http_pull\n");
    exit(2);
}

static void split_list(char *s, char ***out, int *n) {
    *n = 0;
    *out = NULL;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        (*out)[(*n)++] = tok;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "push")) g_mode = M_PUSH;
    else if (!strcmp(m, "pushb")) g_mode = M_PUSHB;
    else if (!strcmp(m, "cycle")) g_mode = M_CYCLE;
    else if (!strcmp(m, "drain")) g_mode = M_DRAIN;
    else if (!strcmp(m, "getstate")) g_mode = M_GETSTATE;
    else if (!strcmp(m, "http_push")) g_mode = M_HTTP_PUSH;
    else if (!strcmp(m, "http_pull")) g_mode = M_HTTP_PULL;
    else usage();
    char *qarg = NULL, *warg = NULL;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "h:p:c:n:b:q:W:T:B:")) != -1) {
        switch (opt) {
        case 'h': g_host = optarg; break;
        case 'p': g_port = atoi(optarg); break;
        case 'c': g_conns = atoi(optarg); break;
        case 'n': g_total = atol(optarg); break;
        case 'b': g_batch = atoi(optarg); break;
        case 'q': qarg = optarg; break;
        case 'W': warg = optarg; break;
        case 'T': g_deadline_s = atof(optarg); break;
        case 'B': g_budget_s = atof(optarg); break;
        default: usage();
        }
    }
    if (g_conns < 1 || g_total < g_conns || g_batch < 1 || g_port <= 0) usage();
    if (!qarg) die("-q queue names are required");
    split_list(qarg, &g_queues, &g_nqueues);
    if (g_nqueues < 1) die("-q needs at least one queue name");
    if (warg) {
        char **ws;
        int nw;
        split_list(warg, &ws, &nw);
        for (int i = 0; i < nw && g_nwatch < 64; i++) g_watch[g_nwatch++] = atoi(ws[i]);
        free(ws);
    }

    conn_t *cs = calloc((size_t)g_conns, sizeof *cs);
    if (!cs) die("out of memory");
    g_epfd = epoll_create1(0);
    for (int i = 0; i < g_conns; i++) {
        conn_t *c = &cs[i];
        c->idx = i;
        c->queue = g_queues[i % g_nqueues];
        c->quota = g_total / g_conns + (i < g_total % g_conns ? 1 : 0);
        c->seq = (long)i * 100000000L;
        c->fd = connect_one();
    }
    if (g_mode == M_GETSTATE)
        for (int i = 0; i < g_conns; i++) prep_getstate(&cs[i]);
    for (int i = 0; i < g_conns; i++) {
        set_nonblocking(cs[i].fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    }

    double w0[64], w1[64];
    for (int i = 0; i < g_nwatch; i++) w0[i] = proc_cpu_s(g_watch[i]);
    double self0 = self_cpu_s();
    double mbusy0, mtotal0, mbusy1, mtotal1;
    machine_cpu_s(&mbusy0, &mtotal0);
    uint64_t t_start = now_ns();
    uint64_t t_deadline = t_start + (uint64_t)(g_deadline_s * 1e9);
    if (g_budget_s > 0) g_budget_end = t_start + (uint64_t)(g_budget_s * 1e9);

    for (int i = 0; i < g_conns; i++) send_next(&cs[i]);
    int active = g_conns, timed_out = 0;
    struct epoll_event evs[256];
    while (active > 0) {
        int n = epoll_wait(g_epfd, evs, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->finished) continue;
            if (evs[k].events & EPOLLOUT) {
                if (!flush_out(c)) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        active = 0;
        for (int i = 0; i < g_conns; i++) active += !cs[i].finished;
        if (active && now_ns() > t_deadline) {
            timed_out = 1;
            break;
        }
    }
    uint64_t t_end = now_ns();
    double self1 = self_cpu_s();
    machine_cpu_s(&mbusy1, &mtotal1);
    for (int i = 0; i < g_nwatch; i++) w1[i] = proc_cpu_s(g_watch[i]);

    long units = 0;
    for (int i = 0; i < g_conns; i++) units += cs[i].done;
    double secs = (double)(t_end - t_start) / 1e9;
    qsort(g_lat, g_nlat, sizeof *g_lat, cmp_u64);
    printf("{\"mode\":\"%s\",\"conns\":%d,\"units\":%ld,\"requests\":%ld,\"seconds\":%.6f,"
           "\"ops_per_s\":%.1f,\"samples\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"errors\":%ld,\"timed_out\":%s,\"budget_hit\":%s,"
           "\"requested\":%ld,\"empty_pulls\":%ld,"
           "\"cpu_self_s\":%.4f,\"machine_busy_s\":%.2f,\"machine_total_s\":%.2f,"
           "\"cpu_watch_s\":{",
           m, g_conns, units, g_requests, secs, secs > 0 ? (double)units / secs : 0.0, g_nlat,
           pct_us(0.5), pct_us(0.99), pct_us(0.999), g_nlat ? (double)g_lat[g_nlat - 1] / 1000.0 : 0,
           g_errors, timed_out ? "true" : "false", g_budget_hit ? "true" : "false", g_total,
           g_empty_pulls, self1 - self0,
           mbusy1 - mbusy0, mtotal1 - mtotal0);
    for (int i = 0; i < g_nwatch; i++)
        printf("%s\"%d\":%.4f", i ? "," : "", g_watch[i],
               (w0[i] < 0 || w1[i] < 0) ? -1.0 : w1[i] - w0[i]);
    printf("},\"first_error\":\"");
    for (const char *p = g_first_error; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        putchar(isprint((unsigned char)*p) ? *p : '?');
    }
    printf("\"}\n");
    fflush(stdout);
    return (g_errors || timed_out) ? 1 : 0;
}

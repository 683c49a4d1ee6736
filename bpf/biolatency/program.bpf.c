/* biolatency: block I/O latency per disk and operation, like bcc's biolatency, from
 * block:block_rq_issue and block:block_rq_complete; with --events also one record per
 * request, like bcc's biosnoop.
 *
 * A request is identified by (dev, sector) from the tracepoint arguments (the request
 * struct is never touched). Issue records the time (and, for --events, the task that is
 * current: for requests dispatched directly, as blk-mq does when there is no I/O
 * scheduler or plug to flush elsewhere, that is the submitter; for requests dispatched
 * from a kworker it is that kworker). The first completion of that (dev, sector) closes
 * it. Two requests in flight at once on the same dev and sector (zero-length flushes,
 * typically) share one entry, so only one of them is measured.
 *
 * The -p/--pid and -n/--comm filters, and the agent's self-filter, apply to the task
 * current at issue.
 *
 * The histogram's cgroup_id is that of the task that submitted the request:
 * block:block_io_start fires when a bio becomes a request, in the submitting task's
 * context (blk_mq_submit_bio), and its cgroup is kept by (dev, sector) until the issue.
 * A request whose start was not seen (a flush the kernel made up, one started before
 * the tracer, one whose first sector changed with a front merge) gets the cgroup of the
 * task current at issue. Writeback of dirty pages is submitted by the flusher threads:
 * their cgroup, not the one of the task that dirtied the pages.
 */
#include "eunomia.h"

#ifndef EMIT_EVENTS
#define EMIT_EVENTS 0
#endif
#ifndef FILTER_MAJOR
#define FILTER_MAJOR -1
#endif
#ifndef FILTER_MINOR
#define FILTER_MINOR -1
#endif

#define MINORBITS 20
#define MINORMASK ((1U << MINORBITS) - 1)

enum { OP_READ = 0, OP_WRITE = 1, OP_DISCARD = 2, OP_FLUSH = 3, OP_OTHER = 4 };

struct event {
    struct eunomia_header hdr;
    u64 sector;
    u64 latency_ns;
    u32 bytes;
    s32 error;
    char disk[16];
    char rwbs[16];
};

struct rq_key {
    u64 sector;
    u32 dev;
    u32 pad;
};

struct issued {
    struct eunomia_header hdr;  /* hdr.ts = issue time; the rest only with --events */
    u64 cgroup_id;              /* the submitter's */
    u32 bytes;
};

BPF_TABLE("lru_hash", struct rq_key, struct issued, inflight, 16384);
BPF_TABLE("lru_hash", struct rq_key, u64, submitters, 16384);  /* started request → submitter's cgroup */

struct hist_key {
    u64 cgroup_id;
    char disk[16];
    u8 op;
    u8 pad[3];
    u32 slot;
};
BPF_HASH(biolatency_latency_seconds, struct hist_key, u64, 4096);

/* "major:minor" as the kernel prints a dev_t, built right to left into two
 * little-endian words so that no byte is written at a variable offset. */
static __always_inline void push_char(u64 *lo, u64 *hi, u64 ch)
{
    *hi = (*hi << 8) | (*lo >> 56);
    *lo = (*lo << 8) | ch;
}

static __always_inline void format_dev(char out[16], u32 dev)
{
    u32 major = dev >> MINORBITS, minor = dev & MINORMASK;
    u64 lo = 0, hi = 0;
#pragma unroll
    for (int i = 0; i < 7; i++) {  /* minor < 2^20: at most 7 digits */
        push_char(&lo, &hi, '0' + minor % 10);
        minor /= 10;
        if (!minor)
            break;
    }
    push_char(&lo, &hi, ':');
#pragma unroll
    for (int i = 0; i < 4; i++) {  /* major < 2^12: at most 4 digits */
        push_char(&lo, &hi, '0' + major % 10);
        major /= 10;
        if (!major)
            break;
    }
    /* at most 12 characters: the last four bytes stay 0, the string is terminated */
    __builtin_memcpy(out, &lo, 8);
    __builtin_memcpy(out + 8, &hi, 8);
}

/* rwbs as blk_fill_rwbs() writes it: an optional 'F' (preflush), then the operation:
 * R, W, D (discard), DE (secure erase), N (none; FN is a flush), then flags. */
static __always_inline u8 op_of(const char *rwbs)
{
    char c0 = rwbs[0], c1 = rwbs[1];
    if (c0 == 'F')
        return c1 == 'W' ? OP_WRITE : c1 == 'N' ? OP_FLUSH : OP_OTHER;
    return c0 == 'R' ? OP_READ : c0 == 'W' ? OP_WRITE : c0 == 'D' ? OP_DISCARD : OP_OTHER;
}

static __always_inline void count_latency(struct hist_key *key)
{
    u64 zero = 0;
    u64 *count = biolatency_latency_seconds.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline int dev_selected(u32 dev)
{
    if (FILTER_MAJOR >= 0 && (dev >> MINORBITS) != (u32)FILTER_MAJOR)
        return 0;
    return FILTER_MINOR < 0 || (dev & MINORMASK) == (u32)FILTER_MINOR;
}

/* A bio became a request, in the submitting task's context. */
TRACEPOINT_PROBE(block, block_io_start)
{
    u32 dev = args->dev;
    if (!dev_selected(dev))
        return 0;
    struct rq_key key = {.sector = args->sector, .dev = dev};
    u64 cgroup_id = eunomia_current_cgroup_id();
    if (submitters.update(&key, &cgroup_id) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    u32 dev = args->dev;
    if (!dev_selected(dev))
        return 0;
    struct rq_key key = {.sector = args->sector, .dev = dev};
    u64 *submitter = submitters.lookup(&key);
    u64 cgroup_id = submitter ? *submitter : eunomia_current_cgroup_id();
    if (submitter)
        submitters.delete(&key);
    if (eunomia_skip_current())
        return 0;
    struct issued rq = {};
    if (EMIT_EVENTS)
        eunomia_fill_header(&rq.hdr);
    else
        rq.hdr.ts = bpf_ktime_get_ns();
    rq.cgroup_id = cgroup_id;
    rq.bytes = args->nr_sector * 512;
    if (inflight.update(&key, &rq) != 0)
        eunomia_count_drop();
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_key key = {.sector = args->sector, .dev = args->dev};
    struct issued *rq = inflight.lookup(&key);
    if (!rq)
        return 0;
    u64 latency = bpf_ktime_get_ns() - rq->hdr.ts;
    char rwbs[16] = {};  /* the tracepoint's char[10], copied through a helper (it sits unaligned in ctx) */
    bpf_probe_read_kernel(rwbs, 10, args->rwbs);

    struct hist_key hk = {.cgroup_id = rq->cgroup_id};
    format_dev(hk.disk, key.dev);
    hk.op = op_of(rwbs);
    hk.slot = bpf_log2l(latency);
    count_latency(&hk);

    if (EMIT_EVENTS) {
        struct event *e = events.ringbuf_reserve(sizeof(struct event));
        if (!e) {
            eunomia_count_drop();
        } else {
            __builtin_memcpy(&e->hdr, &rq->hdr, sizeof(e->hdr));
            e->sector = key.sector;
            e->latency_ns = latency;
            e->bytes = rq->bytes;
            e->error = args->error;
            __builtin_memcpy(e->disk, hk.disk, sizeof(e->disk));
            __builtin_memcpy(e->rwbs, rwbs, sizeof(e->rwbs));
            eunomia_submit(e, sizeof(*e));
        }
    }
    inflight.delete(&key);
    return 0;
}

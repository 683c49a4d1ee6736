/* Common definitions for every Eunomia tracer (BCC C).
 *
 * Rules for tracers: read kernel data only from tracepoint arguments (BCC builds their
 * layout from tracefs at run time, so it is exact) and BPF helpers; never dereference
 * kernel structs, whose layout the installed headers may not match.
 *
 * Every event struct starts with `struct eunomia_header hdr;`. The runtime passes:
 *   EUNOMIA_RINGBUF_PAGES        ring buffer size in pages
 *   EUNOMIA_FILTER_PID           tgid to keep, 0 for all
 *   EUNOMIA_FILTER_COMM_SET/_LO/_HI   comm to keep, as two little-endian u64 words
 *   EUNOMIA_FILTER_CGROUP        1: keep only tasks in (or below) a cgroup of the
 *                                eunomia_cgroups map; 2: keep only tasks in none of them
 *   EUNOMIA_EVENT_SIZE/_STRUCT   the event size its spec implies (checked below)
 *   EUNOMIA_CGROUP_ROWS          rows for `cgroup_rows` metrics (--cgroup-rows), 0: none
 */
#ifndef EUNOMIA_H
#define EUNOMIA_H

#include <uapi/linux/ptrace.h>

#ifndef EUNOMIA_RINGBUF_PAGES
#define EUNOMIA_RINGBUF_PAGES 256
#endif
#ifndef EUNOMIA_FILTER_PID
#define EUNOMIA_FILTER_PID 0
#endif
/* Set by the worker: itself and its supervisor are never traced, from the first
 * instruction on (the map below covers the other agent processes). */
#ifndef EUNOMIA_SELF_PID
#define EUNOMIA_SELF_PID 0
#endif
#ifndef EUNOMIA_AGENT_PID
#define EUNOMIA_AGENT_PID 0
#endif
#ifndef EUNOMIA_FILTER_CGROUP
#define EUNOMIA_FILTER_CGROUP 0
#endif
#ifndef EUNOMIA_FILTER_COMM_SET
#define EUNOMIA_FILTER_COMM_SET 0
#define EUNOMIA_FILTER_COMM_LO 0ULL
#define EUNOMIA_FILTER_COMM_HI 0ULL
#endif

struct eunomia_header {
    u64 ts;          /* bpf_ktime_get_ns(); user space converts to ns since the epoch */
    u64 cgroup_id;   /* cgroup v2 id = inode of the cgroup directory */
    u32 pid;         /* tgid */
    u32 tid;
    u32 uid;
    u32 gid;
    char comm[16];
};

#ifndef EUNOMIA_NCPUS
#define EUNOMIA_NCPUS 64
#endif
/* Wake the reader once a CPU has queued this many bytes; until then it reads every
 * poll interval (50 ms). Few wakeups at low rates, and never a full ring at high ones. */
#define EUNOMIA_WAKEUP_BYTES ((EUNOMIA_RINGBUF_PAGES * 4096ULL) / (4 * EUNOMIA_NCPUS))

BPF_RINGBUF_OUTPUT(events, EUNOMIA_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(eunomia_unsignalled, u64, 1);  /* bytes queued since this CPU last woke the reader */
/* Events lost in the kernel: ring buffer full (reservation failed) or a map full. */
BPF_PERCPU_ARRAY(eunomia_drops, u64, 1);
/* The agent's own processes (supervisor, workers and whatever they fork). */
BPF_HASH(eunomia_agent_pids, u32, u8, 4096);
/* A hash lookup on every event is measurable on hot paths (every syscall): each CPU keeps
 * the last verdict, valid while the generation (bumped on every change to the set above,
 * by the program or by the worker) is unchanged. */
BPF_ARRAY(eunomia_agent_generation, u64, 1);
struct eunomia_agent_verdict {
    u64 generation;
    u32 tgid;
    u32 is_agent;
};
BPF_PERCPU_ARRAY(eunomia_agent_cache, struct eunomia_agent_verdict, 1);

/* The cgroup filter (--container, --pod, --namespace, --host, --cgroup): cgroup v2 ids
 * that the worker keeps current as the supervisor learns of containers. A task matches
 * when its cgroup or one of its ancestors is in the map, so processes in sub-cgroups of
 * a container, and containers of a pod (the pod's cgroup is their parent), match too.
 * The verdict is cached per CPU for the last cgroup, like the agent's, by generation. */
#define EUNOMIA_CGROUP_DEPTH 16
BPF_HASH(eunomia_cgroups, u64, u8, 16384);
BPF_ARRAY(eunomia_cgroup_generation, u64, 1);
struct eunomia_cgroup_verdict {
    u64 generation;
    u64 cgroup_id;
    u64 matches;
};
BPF_PERCPU_ARRAY(eunomia_cgroup_cache, struct eunomia_cgroup_verdict, 1);

/* bpf_get_current_cgroup_id() costs tens of ns, too much on paths such as every syscall:
 * each CPU remembers the last thread's answer. A thread's cgroup changes only when it is
 * moved (cgroup:cgroup_attach_task / cgroup_transfer_tasks) and a thread id names another
 * thread only after an exit: both bump the generation, which invalidates every memo. The
 * worker bumps it too when it changes the cgroup rows below. */
BPF_ARRAY(eunomia_cgroup_moves, u64, 1);
struct eunomia_cgroup_memo {
    u64 pid_tgid;
    u64 cgroup_id;
    u64 generation;
    u32 row;
    u32 pad;
};
BPF_PERCPU_ARRAY(eunomia_cgroup_memo, struct eunomia_cgroup_memo, 1);

/* Cgroup rows (EUNOMIA_CGROUP_ROWS > 0, for tracers with `cgroup_rows` metrics): the worker
 * gives each of the busiest cgroups a row number, and a hot path counts in a per-CPU array
 * at row * columns + column instead of a hash map keyed by (cgroup, column): an array
 * lookup is a few instructions, a hash lookup tens of ns. A cgroup without a row (all taken,
 * or not yet assigned: the worker assigns once a second) counts in the hash map. */
#ifndef EUNOMIA_CGROUP_ROWS
#define EUNOMIA_CGROUP_ROWS 0
#endif
#define EUNOMIA_NO_ROW 0xffffffffU
/* Cells of a row array of `columns` columns (one row even when rows are off, so it compiles). */
#define EUNOMIA_ROW_CELLS(columns) ((EUNOMIA_CGROUP_ROWS > 0 ? EUNOMIA_CGROUP_ROWS : 1) * (columns))
#if EUNOMIA_CGROUP_ROWS > 0
BPF_HASH(eunomia_cgroup_rows, u64, u32, EUNOMIA_CGROUP_ROWS);
#endif

/* The current task's cgroup id; *row receives its cgroup's row or EUNOMIA_NO_ROW. */
static __always_inline u64 eunomia_current_cgroup_row(u32 *row)
{
    int zero = 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 *moves = eunomia_cgroup_moves.lookup(&zero);
    struct eunomia_cgroup_memo *memo = eunomia_cgroup_memo.lookup(&zero);
    *row = EUNOMIA_NO_ROW;
    if (!moves || !memo)
        return bpf_get_current_cgroup_id();
    u64 generation = *moves;
    if (memo->pid_tgid == pid_tgid && memo->generation == generation && memo->cgroup_id) {
        *row = memo->row;
        return memo->cgroup_id;
    }
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u32 found = EUNOMIA_NO_ROW;
#if EUNOMIA_CGROUP_ROWS > 0
    u32 *assigned = eunomia_cgroup_rows.lookup(&cgroup_id);
    if (assigned && *assigned < EUNOMIA_CGROUP_ROWS)
        found = *assigned;
#endif
    memo->pid_tgid = pid_tgid;
    memo->cgroup_id = cgroup_id;
    memo->generation = generation;
    memo->row = found;
    *row = found;
    return cgroup_id;
}

static __always_inline u64 eunomia_current_cgroup_id(void)
{
    u32 row;
    return eunomia_current_cgroup_row(&row);
}

static __always_inline void eunomia_cgroups_moved(void)
{
    int zero = 0;
    u64 *moves = eunomia_cgroup_moves.lookup(&zero);
    if (moves)
        __sync_fetch_and_add(moves, 1);
}

static __always_inline int eunomia_cgroup_listed(void)
{
    for (int level = 1; level < EUNOMIA_CGROUP_DEPTH; level++) {  /* level 0 is the root */
        u64 id = bpf_get_current_ancestor_cgroup_id(level);
        if (!id)
            break;  /* below the task's own cgroup */
        if (eunomia_cgroups.lookup(&id))
            return 1;
    }
    return 0;
}

static __always_inline int eunomia_cgroup_matches(void)
{
    int zero = 0;
    u64 cgroup_id = eunomia_current_cgroup_id();
    u64 *generation = eunomia_cgroup_generation.lookup(&zero);
    struct eunomia_cgroup_verdict *cached = eunomia_cgroup_cache.lookup(&zero);
    if (!generation || !cached)
        return eunomia_cgroup_listed();
    u64 gen = *generation;
    if (cached->cgroup_id == cgroup_id && cached->generation == gen)
        return cached->matches;
    int listed = eunomia_cgroup_listed();
    cached->cgroup_id = cgroup_id;
    cached->generation = gen;
    cached->matches = listed;
    return listed;
}

static __always_inline int eunomia_is_agent(u32 tgid)
{
    if (tgid == EUNOMIA_SELF_PID || tgid == EUNOMIA_AGENT_PID)
        return 1;
    int zero = 0;
    u64 *generation = eunomia_agent_generation.lookup(&zero);
    struct eunomia_agent_verdict *cached = eunomia_agent_cache.lookup(&zero);
    if (!generation || !cached)
        return eunomia_agent_pids.lookup(&tgid) != NULL;
    u64 gen = *generation;
    if (cached->tgid == tgid && cached->generation == gen)
        return cached->is_agent;
    int agent = eunomia_agent_pids.lookup(&tgid) != NULL;
    cached->tgid = tgid;
    cached->generation = gen;
    cached->is_agent = agent;
    return agent;
}

static __always_inline void eunomia_agent_changed(void)
{
    int zero = 0;
    u64 *generation = eunomia_agent_generation.lookup(&zero);
    if (generation)
        __sync_fetch_and_add(generation, 1);
}

static __always_inline void eunomia_count_drop(void)
{
    int zero = 0;
    u64 *count = eunomia_drops.lookup(&zero);
    if (count)
        (*count)++;
}

/* 1 if the current task must be ignored: the agent itself, or outside the pid filter,
 * or outside the cgroup filter, or (with_comm) outside the comm filter. */
static __always_inline int eunomia_skip(int with_comm)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (EUNOMIA_FILTER_PID && tgid != EUNOMIA_FILTER_PID)
        return 1;
    if (eunomia_is_agent(tgid))
        return 1;
    if (EUNOMIA_FILTER_CGROUP && eunomia_cgroup_matches() != (EUNOMIA_FILTER_CGROUP == 1))
        return 1;
    if (with_comm && EUNOMIA_FILTER_COMM_SET) {
        u64 comm[2] = {};
        bpf_get_current_comm(&comm, sizeof(comm));
        if (comm[0] != EUNOMIA_FILTER_COMM_LO || comm[1] != EUNOMIA_FILTER_COMM_HI)
            return 1;
    }
    return 0;
}

static __always_inline int eunomia_skip_current(void)
{
    return eunomia_skip(1);
}

static __always_inline u64 eunomia_wakeup_flags(u64 size)
{
    int zero = 0;
    u64 *pending = eunomia_unsignalled.lookup(&zero);
    if (!pending)
        return 0;
    *pending += size;
    if (*pending < EUNOMIA_WAKEUP_BYTES)
        return BPF_RB_NO_WAKEUP;
    *pending = 0;
    return BPF_RB_FORCE_WAKEUP;
}

/* Use these instead of events.ringbuf_submit()/ringbuf_output() (BCC allows no map
 * call inside a macro, hence functions taking the size). */
static __always_inline void eunomia_submit(void *e, u64 size)
{
    events.ringbuf_submit(e, eunomia_wakeup_flags(size));
}

static __always_inline int eunomia_output(void *data, u64 size)
{
    return events.ringbuf_output(data, size, eunomia_wakeup_flags(size));
}

static __always_inline void eunomia_fill_header(struct eunomia_header *h)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = eunomia_current_cgroup_id();
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* A ring buffer record for an event of the current task, its header filled in; NULL
 * (the loss counted) when the ring buffer is full. `size` is sizeof the event struct,
 * whose first member is the header. Submit it with eunomia_submit(). */
static __always_inline void *eunomia_reserve_event(u64 size)
{
    struct eunomia_header *h = events.ringbuf_reserve(size);
    if (!h) {
        eunomia_count_drop();
        return 0;
    }
    eunomia_fill_header(h);
    return h;
}

/* Agent bookkeeping: children of agent processes are agent processes. */
static __always_inline void eunomia_on_fork(u32 child_pid)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (eunomia_is_agent(tgid)) {
        u8 one = 1;
        eunomia_agent_pids.update(&child_pid, &one);
        eunomia_agent_changed();
    }
}

static __always_inline void eunomia_on_exit(void)
{
    eunomia_cgroups_moved();  /* this thread id may name another thread, in another cgroup, next */
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (eunomia_agent_pids.delete(&tid) == 0)
        eunomia_agent_changed();
}

#endif /* EUNOMIA_H */

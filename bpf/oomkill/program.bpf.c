/* oomkill: every victim the kernel's OOM killer chooses, like bcc's oomkill, from
 * oom:mark_victim alone.
 *
 * mark_victim runs in the context of the task that ran the OOM killer (the task whose
 * allocation or memory-cgroup charge failed): that task fills the event header (bcc's
 * "triggered by"); the victim comes from the tracepoint's arguments. The memory figures
 * are given by the kernel in KiB and are reported in bytes.
 *
 * The -p/--pid and -n/--comm filters apply to the VICTIM (its pid and comm as the
 * tracepoint gives them), not to the triggering task. The agent's own processes are not
 * excluded: an OOM kill is rare, cannot feed back into itself, and the kill of an agent
 * process is worth reporting.
 *
 * The counter is keyed by the victim's cgroup, which only a task's own context gives.
 * When the victim is the current task (it triggered the kill itself, the common case)
 * it is counted at once; otherwise it is remembered and counted when the victim exits
 * (sched_process_exit runs in its context), which the SIGKILL it was sent brings about.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#define COMM_LEN 16

struct event {
    struct eunomia_header hdr;
    u64 total_vm_bytes;
    u64 anon_rss_bytes;
    u64 file_rss_bytes;
    u64 shmem_rss_bytes;
    u64 pgtables_bytes;
    u32 tpid;
    u32 tuid;
    s16 oom_score_adj;
    char tcomm[COMM_LEN];
};

struct comm_key {
    u64 cgroup_id;  /* the victim's */
    char comm[COMM_LEN];
};
BPF_HASH(oomkill_kills_total, struct comm_key, u64, 10240);
/* victim thread id → its key (cgroup_id still 0), for a victim that was not current */
BPF_TABLE("lru_hash", u32, struct comm_key, victims, 1024);

/* The common filters, applied to the victim. */
static __always_inline int skip_victim(u32 pid, const char *comm)
{
    if (EUNOMIA_FILTER_PID && pid != EUNOMIA_FILTER_PID)
        return 1;
    if (EUNOMIA_FILTER_COMM_SET) {
        u64 words[2] = {};
        __builtin_memcpy(words, comm, sizeof(words));
        if (words[0] != EUNOMIA_FILTER_COMM_LO || words[1] != EUNOMIA_FILTER_COMM_HI)
            return 1;
    }
    return 0;
}

static __always_inline void count_kill(struct comm_key *key)
{
    u64 zero = 0;
    u64 *count = oomkill_kills_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

TRACEPOINT_PROBE(oom, mark_victim)
{
    struct comm_key key = {};
    TP_DATA_LOC_READ_STR(key.comm, comm, sizeof(key.comm));
    u32 pid = (u32)args->pid;
    if (skip_victim(pid, key.comm))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (pid == (u32)pid_tgid || pid == pid_tgid >> 32) {  /* the victim (or its process) is current */
        key.cgroup_id = eunomia_current_cgroup_id();
        count_kill(&key);
    } else if (victims.update(&pid, &key) != 0) {
        eunomia_count_drop();
    }
    struct event *e = eunomia_reserve_event(sizeof(struct event));
    if (!e)
        return 0;
    e->total_vm_bytes = (u64)args->total_vm << 10;
    e->anon_rss_bytes = (u64)args->anon_rss << 10;
    e->file_rss_bytes = (u64)args->file_rss << 10;
    e->shmem_rss_bytes = (u64)args->shmem_rss << 10;
    e->pgtables_bytes = (u64)args->pgtables << 10;
    e->tpid = pid;
    e->tuid = args->uid;
    e->oom_score_adj = args->oom_score_adj;
    __builtin_memcpy(e->tcomm, key.comm, sizeof(e->tcomm));
    eunomia_submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

/* A victim that was not current when it was chosen: counted now, in its own context. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    eunomia_on_exit();
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct comm_key *victim = victims.lookup(&tid);
    if (!victim)
        return 0;
    struct comm_key key = *victim;
    victims.delete(&tid);
    key.cgroup_id = eunomia_current_cgroup_id();
    count_kill(&key);
    return 0;
}

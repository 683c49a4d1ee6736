/* process: exec and exit of every process, with parent, arguments, exit status and lifetime.
 *
 * exec:  sys_enter_execve(at) keeps argv (user memory) per thread; sched_process_exec
 *        emits it with the kernel's resolved filename once the exec has succeeded.
 * exit:  sched_process_exit of a thread-group leader; the status comes from
 *        sys_enter_exit_group or, for a fatal signal, from signal_generate.
 * ppid and start time are recorded at sched_process_fork; user space fills ppid from
 * /proc for processes forked before the tracer started.
 */
#define EUNOMIA_CUSTOM_SCHED_HOOKS
#include "eunomia.h"

#define MAX_ARGS 20
#define ARG_LEN 128
#define FILENAME_LEN 256

enum { EV_EXEC = 0, EV_EXIT = 1 };

struct event {
    struct eunomia_header hdr;
    u64 duration_ns;
    u32 ppid;
    s32 exit_code;
    u32 exit_signal;
    u32 argc;
    u8 event;
    u8 args_truncated;
    char filename[FILENAME_LEN];
    char argv[MAX_ARGS][ARG_LEN];
};

struct exit_status {
    s32 code;
    u32 signal;
};

BPF_HASH(pending_exec, u32, struct event, 1024);       /* tid → argv captured at execve entry */
BPF_TABLE("lru_hash", u32, u32, parents, 65536);       /* pid → parent tgid at fork */
BPF_TABLE("lru_hash", u32, u64, starts, 65536);        /* pid → fork (or exec) time */
BPF_TABLE("lru_hash", u32, struct exit_status, statuses, 16384);
BPF_PERCPU_ARRAY(scratch, struct event, 1);
struct exec_key {
    u64 cgroup_id;  /* the exec'ing task's */
    char comm[16];
};
BPF_HASH(process_execs_total, struct exec_key, u64, 10240);

static __always_inline void count_exec(struct exec_key *key)
{
    u64 zero = 0;
    u64 *count = process_execs_total.lookup_or_try_init(key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        eunomia_count_drop();  /* the map is full */
}

static __always_inline int capture_argv(const char *const *argv)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    int zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    e->argc = 0;
    e->args_truncated = 0;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        bpf_probe_read_user(&arg, sizeof(arg), &argv[i]);
        if (!arg)
            goto done;
        bpf_probe_read_user_str(e->argv[i], ARG_LEN, arg);
        e->argc = i + 1;
    }
    {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]);
        e->args_truncated = more != NULL;
    }
done:
    if (pending_exec.update(&tid, e) != 0)
        eunomia_count_drop();
    return 0;
}

/* The comm changes with the exec: its filter applies in sched_process_exec. */
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    if (eunomia_skip(0))
        return 0;
    return capture_argv(args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    if (eunomia_skip(0))
        return 0;
    return capture_argv(args->argv);
}

/* A failed exec never reaches sched_process_exec: forget its arguments. */
TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    if (args->ret < 0) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        pending_exec.delete(&tid);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    if (args->ret < 0) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        pending_exec.delete(&tid);
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old_tid = args->old_pid;
    struct event *e = pending_exec.lookup(&old_tid);
    if (!e)
        return 0;  /* filtered at entry (agent or pid filter) */
    if (eunomia_skip_current()) {  /* the comm filter, on the new comm */
        pending_exec.delete(&old_tid);
        return 0;
    }
    eunomia_fill_header(&e->hdr);
    u32 pid = e->hdr.pid;
    u32 *ppid = parents.lookup(&pid);
    e->ppid = ppid ? *ppid : 0;
    e->event = EV_EXEC;
    e->exit_code = 0;
    e->exit_signal = 0;
    e->duration_ns = 0;
    TP_DATA_LOC_READ_STR(e->filename, filename, FILENAME_LEN);
    u64 now = e->hdr.ts;
    if (!starts.lookup(&pid))
        starts.update(&pid, &now);

    struct exec_key key = {.cgroup_id = e->hdr.cgroup_id};
    __builtin_memcpy(key.comm, e->hdr.comm, sizeof(key.comm));
    count_exec(&key);

    u32 argc = e->argc;
    if (argc > MAX_ARGS)
        argc = MAX_ARGS;
    u64 size = __builtin_offsetof(struct event, argv) + (u64)argc * ARG_LEN;
    if (size > sizeof(*e))
        size = sizeof(*e);
    if (eunomia_output(e, size) != 0)
        eunomia_count_drop();
    pending_exec.delete(&old_tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    u32 child = args->child_pid;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    u64 now = bpf_ktime_get_ns();
    parents.update(&child, &parent);
    starts.update(&child, &now);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct exit_status st = {.code = (s32)(args->error_code & 0xff), .signal = 0};
    statuses.update(&pid, &st);
    return 0;
}

/* Delivered, not ignored: the newest such signal is the candidate cause of death. A
 * handled signal clears it again in signal_deliver. */
TRACEPOINT_PROBE(signal, signal_generate)
{
    if (args->result != 0)
        return 0;
    u32 pid = args->pid;
    struct exit_status st = {.code = -1, .signal = args->sig};
    struct exit_status *old = statuses.lookup(&pid);
    if (old && old->signal == 0)
        return 0;  /* already exiting with a status */
    statuses.update(&pid, &st);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    if (args->sa_handler == 0)  /* SIG_DFL: may be fatal, keep it */
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct exit_status *old = statuses.lookup(&pid);
    if (old && old->signal == (u32)args->sig)
        statuses.delete(&pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    int skip = eunomia_skip_current();  /* before eunomia_on_exit() forgets an agent task */
    eunomia_on_exit();
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 pid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    parents.delete(&tid);
    if (pid != tid)
        return 0;  /* a thread, not the process */
    struct exit_status *st = statuses.lookup(&pid);
    u64 *start = starts.lookup(&pid);
    int zero = 0;
    struct event *e = skip ? NULL : scratch.lookup(&zero);
    if (e) {
        eunomia_fill_header(&e->hdr);
        e->event = EV_EXIT;
        e->ppid = 0;
        e->argc = 0;
        e->args_truncated = 0;
        e->exit_code = 0;
        e->exit_signal = 0;
        if (st && st->signal) {
            e->exit_signal = st->signal;
            e->exit_code = 128 + st->signal;
        } else if (st) {
            e->exit_code = st->code;
        }
        e->duration_ns = start ? e->hdr.ts - *start : 0;
        if (eunomia_output(e, __builtin_offsetof(struct event, filename)) != 0)
            eunomia_count_drop();
    }
    statuses.delete(&pid);
    starts.delete(&pid);
    return 0;
}

/* Appended by the loader to every tracer's program (BCC only generates tracepoint
 * argument structs for probes in the main file, so these cannot live in eunomia.h).
 *
 * A tracer that attaches sched_process_fork/exit itself defines EUNOMIA_CUSTOM_SCHED_HOOKS
 * and calls eunomia_on_fork()/eunomia_on_exit() from its own probes.
 */
#ifndef EUNOMIA_CUSTOM_SCHED_HOOKS
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    eunomia_on_fork(args->child_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    eunomia_on_exit();
    return 0;
}
#endif

/* Tasks moved between cgroups: the per-CPU cgroup id memos are stale (see eunomia.h). */
TRACEPOINT_PROBE(cgroup, cgroup_attach_task)
{
    eunomia_cgroups_moved();
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_transfer_tasks)
{
    eunomia_cgroups_moved();
    return 0;
}

#ifdef EUNOMIA_EVENT_SIZE
_Static_assert(sizeof(struct EUNOMIA_EVENT_STRUCT) == EUNOMIA_EVENT_SIZE,
               "struct event does not match the event fields in tracer.yaml (order, types or padding)");
#endif

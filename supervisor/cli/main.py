"""The ``eunomiactl`` command."""

from __future__ import annotations

import typer

from supervisor.cli import agent, apply, containers, doctor, instances, new, query, trace, tracers

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(help="Eunomia: eBPF monitoring agent for container hosts.", no_args_is_help=True,
                  add_completion=False)
app.command()(agent.run)
app.command("list")(instances.list_)
app.command(context_settings=_EXTRA)(instances.start)
app.command()(instances.stop)
app.command()(instances.restart)
app.command()(instances.rm)
app.command(context_settings=_EXTRA)(trace.trace)
app.command()(doctor.doctor)
app.command()(containers.containers)
app.command()(new.new)
app.command()(apply.apply)
app.command("export-state")(apply.export_state)
app.add_typer(query.app, name="query")
app.add_typer(tracers.app, name="tracers")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

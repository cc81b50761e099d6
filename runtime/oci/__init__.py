"""pyrun as an OCI runtime: the interface container engines use to run a container.

An engine (podman, containerd, CRI-O, Docker) pulls images, wires networks
and keeps logs; to run a container it writes a *bundle* (a directory with
config.json and a root filesystem) and calls a runtime such as runc:
`create` sets the container up and stops just before the program runs,
`start` lets it run, `state`, `kill` and `delete` do what they say. The OCI
runtime specification (runtime.md, config.md) defines what each operation
and each config field means; pyrun-oci implements it with the same code as
`pyrun run`:

    cli.py        the runc-shaped command line (the `pyrun-oci` script)
    config.py     config.json -> a checked Bundle (config.md), a section at a time:
                  config_process.py, config_mounts.py, config_linux.py (config-linux.md)
    state.py      the state records and statuses (runtime.md "State")
    lifecycle.py  create, start, kill, delete on the host (runtime.md "Lifecycle")
    init.py       the container's side: set up, wait on the exec FIFO, exec
"""

"""`features`: what this runtime can do, as JSON in runc's format (the runtime-spec's features.md).

An engine reads it to learn, before writing a config, which hooks, mount
options, namespaces, capabilities and seccomp actions the runtime knows;
pyrun lists exactly what config.py (and its sections) honours, so that what it advertises and
what it accepts cannot drift apart.
"""
from runtime import cgroups
from runtime.oci import config, config_linux, config_mounts
from runtime.oci.state import OCI_VERSION
from runtime.security import ALL_CAPS


def features() -> dict:
    from runtime import seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(config.HOOKS),
        "mountOptions": sorted({*config_mounts.MOUNT_FLAGS, *config_mounts.PROPAGATION, "bind", "rbind", "defaults"}),
        "linux": {
            "namespaces": sorted(config_linux.NAMESPACES),
            "capabilities": [f"CAP_{name}" for name in sorted(ALL_CAPS)],
            "cgroup": {"v1": cgroups.hierarchy("memory")[0] == 1 or cgroups.guards_devices(),
                       "v2": bool(cgroups._v2_controllers()), "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS), "operators": sorted(seccomp.OPERATORS),
                        "archs": [f"SCMP_ARCH_{a}" for a in ("X86_64", "X86", "X32", "AARCH64", "ARM")]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "pyrun-oci"},
    }

"""Run the test session in a private network namespace that holds only loopback.

Orthanc 1.10 always binds 0.0.0.0 (its HTTP and DICOM servers have no bind-address option), and
the PACS tests open DIMSE listeners of their own. A private namespace keeps every one of those
ports off the machine's real interfaces and makes port clashes with other jobs impossible.

Interfaces are listed with ``socket.if_nameindex()`` (netlink, the calling process's namespace)
rather than ``/sys/class/net``: sysfs shows the namespace it was *mounted* in, so after
``unshare -n`` it still lists ``eth0`` and would make a private namespace look public.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess

CLONE_NEWNET = 0x40000000


def interface_names() -> list[str]:
    """Return the names of the network interfaces of this process's network namespace."""
    return [name for _, name in socket.if_nameindex()]


def ensure_private_netns() -> None:
    """Move this process into a fresh network namespace with only ``lo`` (up), if not already.

    Only the calling thread changes namespace, so this must run before any test starts a thread
    (``pytest_configure`` does). Child processes (Orthanc, dcmtk) inherit the namespace.

    Raises:
        OSError: if ``unshare(CLONE_NEWNET)`` fails (errno from the kernel).
        RuntimeError: if there are other interfaces and the process is not root, with the command
            that runs the tests in a user + network namespace instead.
    """
    names = interface_names()
    if names == ["lo"]:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            "the test session must run in a private network namespace with only 'lo', got "
            f"interfaces {names}; run it as: unshare -rn sh -c 'ip link set lo up && exec pytest …'"
        )
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) must succeed, got {os.strerror(err)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

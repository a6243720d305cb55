"""Private network namespaces for tests: nothing the tests send can leave the machine.

aioice never gathers 127.0.0.1 and Chromium never offers it, so peers need a real interface address. The
test process moves itself into a fresh network namespace (only root can) holding one veth pair with
addresses in 10.77.0.0/24; every socket the tests open, and every subprocess they start, lives there.
Browser tests add named namespaces of their own with further veth pairs (see `NamedNamespace`).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import uuid
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
HOST_ADDR = "10.77.0.1"  # the address servers bind and announce in tests
PEER_ADDR = "10.77.0.2"  # a second address on the same private link


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def enter_private_netns() -> None:
    """Move this (still single-threaded) process into a new network namespace with a veth pair up."""
    if os.environ.get("CONFIDANT_TEST_NETNS") == "entered":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise RuntimeError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}; the tests must run as root")
    run("ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "cf0", "type", "veth", "peer", "name", "cf1")
    run("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", "cf0")
    run("ip", "addr", "add", f"{PEER_ADDR}/24", "dev", "cf1")
    run("ip", "link", "set", "cf0", "up")
    run("ip", "link", "set", "cf1", "up")
    os.environ["CONFIDANT_TEST_NETNS"] = "entered"  # subprocesses inherit the namespace already


@dataclass
class NamedNamespace:
    """A named namespace joined to the test process's namespace by a veth pair on its own /30-ish subnet.

    `inside` is the namespace's address, `outside` the test process's end; commands run in it with
    `exec()`. Always `close()` it (the fixtures do, even on failure).
    """

    name: str
    inside: str
    outside: str
    dev_inside: str
    dev_outside: str

    @classmethod
    def create(cls, index: int) -> "NamedNamespace":
        tag = uuid.uuid4().hex[:6]
        name = f"cf-{tag}"
        dev_out, dev_in = f"cfo{tag}", f"cfi{tag}"
        inside, outside = f"10.78.{index}.2", f"10.78.{index}.1"
        run("ip", "netns", "add", name)
        run("ip", "link", "add", dev_out, "type", "veth", "peer", "name", dev_in)
        run("ip", "link", "set", dev_in, "netns", name)
        run("ip", "addr", "add", f"{outside}/24", "dev", dev_out)
        run("ip", "link", "set", dev_out, "up")
        run("ip", "-n", name, "addr", "add", f"{inside}/24", "dev", dev_in)
        run("ip", "-n", name, "link", "set", dev_in, "up")
        run("ip", "-n", name, "link", "set", "lo", "up")
        return cls(name, inside, outside, dev_in, dev_out)

    def exec_args(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "pids", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.dev_outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

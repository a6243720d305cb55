"""Headless Debian Chromium, each instance in its own network namespace, driven by Playwright (async API).

Topology: the test process lives in a private namespace (tests/conftest.py, 10.77.0.1 on `cf0`). Each browser
gets a named namespace joined to it either by a veth pair (`tests.netns.NamedNamespace`, 10.78.N.2 inside,
10.78.N.1 outside) or by a TUN pair through `tests/linkemu.py` (delay, jitter, loss, rate). The browser's
namespace also routes 10.77.0.0/24 via the outside address, so a server bound on 10.77.0.1 (or 0.0.0.0) is
reachable from every browser; packets for it are delivered locally in the test namespace, no forwarding.
Chromium is started through a two-line wrapper script that does `ip netns exec NAME /usr/bin/chromium "$@"`,
so Playwright's driver keeps its pipe to the browser while the browser's sockets live in the namespace.
Everything created here is registered with its owner and removed by `close()`, even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, ConsoleMessage, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from tests.linkemu import LinkParams
from tests.netns import HOST_ADDR, NamedNamespace

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SERVER_PREFIX = "10.77.0.0/24"  # the test process's own link (tests/netns.py)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Real host addresses in ICE candidates instead of .local mDNS names (nothing resolves them here).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _kill_namespace_pids(name: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", name], check=False, capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@dataclass
class BrowserNet:
    """A namespace for one browser: `inside` is the browser's address, `outside` the test process's end."""

    name: str
    inside: str
    outside: str
    dev_inside: str
    dev_outside: str
    kind: str  # "veth" or "linkemu"
    _emulator: subprocess.Popen[bytes] | None = None
    _veth: NamedNamespace | None = None

    def exec_args(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], check=False, capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def limit_rate(
        self, kbit: int, *, uplink: bool = True, downlink: bool = True, burst: str = "16kb"
    ) -> None:
        """`tc tbf` on the veth: uplink is the browser's egress, downlink the test side's egress."""
        if self.kind != "veth":
            raise ValueError("tbf shaping needs a veth namespace; use LinkParams(rate_kbit=...) for linkemu")
        tbf = ["tbf", "rate", f"{kbit}kbit", "burst", burst, "latency", "200ms"]
        if uplink:
            _run(
                "ip",
                "netns",
                "exec",
                self.name,
                "tc",
                "qdisc",
                "replace",
                "dev",
                self.dev_inside,
                "root",
                *tbf,
            )
        if downlink:
            _run("tc", "qdisc", "replace", "dev", self.dev_outside, "root", *tbf)

    def add_loss(self, percent: float) -> None:
        """Random UDP loss on the browser's egress and ingress with nftables `numgen random`."""
        per_mille = round(percent * 10)
        rules = (
            "table inet cfloss {\n"
            " chain out { type filter hook output priority 0; policy accept;\n"
            f"  meta l4proto udp numgen random mod 1000 < {per_mille} counter drop }}\n"
            " chain in { type filter hook input priority 0; policy accept;\n"
            f"  meta l4proto udp numgen random mod 1000 < {per_mille} counter drop }}\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
            input=rules.encode(),
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        _kill_namespace_pids(self.name)
        if self._emulator is not None and self._emulator.poll() is None:
            self._emulator.terminate()
            try:
                self._emulator.wait(5)
            except subprocess.TimeoutExpired:
                self._emulator.kill()
                self._emulator.wait()
        if self._veth is not None:
            self._veth.close()  # also deletes the namespace
        else:
            subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


def create_veth_net(index: int) -> BrowserNet:
    ns = NamedNamespace.create(index)
    try:
        _run("ip", "-n", ns.name, "route", "add", SERVER_PREFIX, "via", ns.outside)
    except BaseException:
        ns.close()
        raise
    return BrowserNet(ns.name, ns.inside, ns.outside, ns.dev_inside, ns.dev_outside, "veth", _veth=ns)


def create_linkemu_net(index: int, params: LinkParams) -> BrowserNet:
    """A namespace whose only link is a TUN pair through the userspace emulator (so ICE has no unshaped path)."""
    tag = uuid.uuid4().hex[:6]
    name = f"cf-{tag}"
    dev_near, dev_far = f"cfl{tag}", f"cfm{tag}"  # never tun*/tap*: Chromium would class them as VPN
    inside, outside = f"10.78.{index}.2", f"10.78.{index}.1"
    _run("ip", "netns", "add", name)
    net = BrowserNet(name, inside, outside, dev_far, dev_near, "linkemu")
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        cmd = [
            sys.executable,
            "-m",
            "tests.linkemu",
            "--ns",
            name,
            "--near",
            outside,
            "--far",
            inside,
            "--dev-near",
            dev_near,
            "--dev-far",
            dev_far,
            "--route",
            SERVER_PREFIX,
            "--delay",
            str(params.delay_ms),
            "--jitter",
            str(params.jitter_ms),
            "--loss",
            str(params.loss_pct),
            "--rate",
            str(params.rate_kbit),
            "--queue-ms",
            str(params.queue_ms),
        ]
        root = Path(__file__).resolve().parent.parent.parent
        net._emulator = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE)
        assert net._emulator.stdout is not None
        line = net._emulator.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"link emulator failed to start: {line!r}")
    except BaseException:
        net.close()
        raise
    return net


@dataclass
class Browser:
    """One Chromium (persistent context, one page) and what it logged."""

    net: BrowserNet
    context: BrowserContext
    page: Page
    console: list[str] = field(default_factory=list)

    async def wait_for(
        self, js: str, arg: Any = None, *, timeout: float = 15.0, interval: float = 0.25
    ) -> Any:
        """Poll `js` (a function expression) until it returns something truthy; returns it."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while True:
            last = await self.page.evaluate(js, arg)
            if last:
                return last
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"{js!r} still {last!r} after {timeout}s; console tail: {self.console[-15:]}"
                )
            await asyncio.sleep(interval)


class BrowserLab:
    """Creates namespaces and browsers for one test and removes all of them in `close()`."""

    MAX_BROWSERS = 3  # 2 shared cores: more than this starves the server under test

    def __init__(self) -> None:
        self._pw_cm: Any = None
        self._pw: Playwright | None = None
        self._nets: list[BrowserNet] = []
        self._browsers: list[Browser] = []
        self._tmpdirs: list[str] = []
        self._next_index = 1

    def net(self, link: LinkParams | None = None) -> BrowserNet:
        index = self._next_index
        self._next_index += 1
        net = create_veth_net(index) if link is None else create_linkemu_net(index, link)
        self._nets.append(net)
        return net

    async def launch(
        self,
        origin: str,
        *,
        net: BrowserNet | None = None,
        link: LinkParams | None = None,
        viewport: tuple[int, int] = (1280, 720),
    ) -> Browser:
        """Start Chromium in `net` (a fresh veth namespace by default) allowed to use gUM on `origin`."""
        if len(self._browsers) >= self.MAX_BROWSERS:
            raise RuntimeError(f"at most {self.MAX_BROWSERS} browsers at once on this machine")
        if net is None:
            net = self.net(link)
        if self._pw is None:
            self._pw_cm = async_playwright()
            self._pw = await self._pw_cm.__aenter__()
        tmp = tempfile.mkdtemp(prefix="cf-chromium-")
        self._tmpdirs.append(tmp)
        wrapper = Path(tmp) / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {net.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        context = await self._pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"),
            executable_path=str(wrapper),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"],
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        page = context.pages[0] if context.pages else await context.new_page()
        browser = Browser(net, context, page)

        def on_console(msg: ConsoleMessage) -> None:
            browser.console.append(f"{msg.type}: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: browser.console.append(f"pageerror: {exc}"))
        self._browsers.append(browser)
        return browser

    async def close(self) -> None:
        for b in self._browsers:
            try:
                await asyncio.wait_for(b.context.close(), 15)
            except (TimeoutError, PlaywrightError) as exc:  # the namespace kill below ends a hung browser
                print(f"closing browser in {b.net.name}: {exc!r}", file=sys.stderr)
        self._browsers.clear()
        if self._pw_cm is not None:
            try:
                await self._pw_cm.__aexit__(None, None, None)
            except PlaywrightError as exc:
                print(f"stopping playwright: {exc!r}", file=sys.stderr)
            self._pw_cm = self._pw = None
        for net in self._nets:
            net.close()
        self._nets.clear()
        for d in self._tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        self._tmpdirs.clear()


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


__all__ = ["ARTIFACTS", "HOST_ADDR", "Browser", "BrowserLab", "BrowserNet", "LinkParams", "artifact_path"]

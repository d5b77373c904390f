#!/usr/bin/env python3
"""Cluster DNS for the test node: Services and Endpoints as a hosts file that dnsmasq serves.

bookworm has no CoreDNS; Debian's dnsmasq answers from a hosts file and re-reads it on SIGHUP.
This watches the apiserver (list + watch, standard library only, so it needs nothing from the
project's virtualenv) and keeps that file equal to what kube-dns would answer for A records:

* ``svc.ns.svc.<domain>`` -> the ClusterIP of every Service that has one;
* a headless Service (``clusterIP: None``): its ready endpoint addresses (and the not-ready ones
  with ``publishNotReadyAddresses``), plus ``hostname.svc.ns.svc.<domain>`` for addresses with a
  hostname (StatefulSet pods).

Not served: SRV records, ExternalName (CNAME) Services and ``*.pod.<domain>`` names.

Usage:
  cluster-dns.py watch --server URL --ca CA --cert CRT --key KEY --hosts FILE --dnsmasq-pid PID
  cluster-dns.py query SERVER PORT NAME      prints NAME's A records; exit 1 when there are none
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

LOG = logging.getLogger("cluster-dns")
WATCH_SECONDS = 300


class Api:
    """The two calls needed: a list and a watch stream, authenticated with a client certificate."""

    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(cafile=ca)
        self.context.load_cert_chain(cert, key)

    def _open(self, path: str, timeout: float) -> http.client.HTTPResponse:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            body = response.read(500).decode(errors="replace")
            connection.close()
            raise OSError(f"GET {path}: HTTP {response.status}: {body}")
        return response

    def list(self, resource: str) -> dict[str, Any]:
        with self._open(f"/api/v1/{resource}", timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def watch(self, resource: str, resource_version: str) -> Iterator[dict[str, Any]]:
        query = urllib.parse.urlencode(
            {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": WATCH_SECONDS,
             "allowWatchBookmarks": "true"}
        )  # fmt: skip
        with self._open(f"/api/v1/{resource}?{query}", timeout=WATCH_SECONDS + 30) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)


class Records:
    """Services and Endpoints as last seen, rendered to the hosts file on every change."""

    def __init__(self, hosts_file: str, dnsmasq_pid: int, domain: str) -> None:
        self.hosts_file = hosts_file
        self.dnsmasq_pid = dnsmasq_pid
        self.domain = domain
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"services": {}, "endpoints": {}}
        self.lock = threading.Lock()
        self.rendered: str | None = None

    def replace(self, resource: str, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.objects[resource] = {_key(item): item for item in items}
            self._publish()

    def apply(self, resource: str, event_type: str, item: dict[str, Any]) -> None:
        with self.lock:
            if event_type == "DELETED":
                self.objects[resource].pop(_key(item), None)
            else:
                self.objects[resource][_key(item)] = item
            self._publish()

    def lines(self) -> list[str]:
        lines = []
        for (namespace, name), service in self.objects["services"].items():
            fqdn = f"{name}.{namespace}.svc.{self.domain}"
            spec = service.get("spec", {})
            cluster_ip = spec.get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                lines.append(f"{cluster_ip} {fqdn}")
                continue
            if cluster_ip != "None":
                continue  # ExternalName: a CNAME, which a hosts file cannot hold
            endpoints = self.objects["endpoints"].get((namespace, name), {})
            for subset in endpoints.get("subsets") or []:
                addresses = list(subset.get("addresses") or [])
                if spec.get("publishNotReadyAddresses"):
                    addresses += subset.get("notReadyAddresses") or []
                for address in addresses:
                    lines.append(f"{address['ip']} {fqdn}")
                    if address.get("hostname"):
                        lines.append(f"{address['ip']} {address['hostname']}.{fqdn}")
        return sorted(set(lines))

    def _publish(self) -> None:
        text = "".join(f"{line}\n" for line in self.lines())
        if text == self.rendered:
            return
        temporary = f"{self.hosts_file}.tmp"
        with open(temporary, "w") as handle:
            handle.write(text)
        os.replace(temporary, self.hosts_file)
        os.kill(self.dnsmasq_pid, signal.SIGHUP)  # dnsmasq re-reads its hosts files and drops its cache
        self.rendered = text
        LOG.info("published %d records", text.count("\n"))


def _key(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item["metadata"]
    return metadata["namespace"], metadata["name"]


def follow(api: Api, records: Records, resource: str, listed: threading.Event) -> None:
    """List, then watch from that version; list again when the watch ends or the version expired."""
    while True:
        try:
            listing = api.list(resource)
            records.replace(resource, listing.get("items") or [])
            listed.set()
            version = listing["metadata"]["resourceVersion"]
            while True:
                for event in api.watch(resource, version):
                    kind, item = event["type"], event["object"]
                    if kind == "ERROR":
                        raise OSError(f"watch {resource}: {item.get('message')}")  # 410 Gone: list again
                    version = item["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        records.apply(resource, kind, item)
        except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
            LOG.warning("%s: %s; listing again in 1 s", resource, exc)
            time.sleep(1)


def watch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    api = Api(args.server, args.ca, args.cert, args.key)
    records = Records(args.hosts, args.dnsmasq_pid, args.domain)
    events = []
    for resource in ("services", "endpoints"):
        listed = threading.Event()
        threading.Thread(target=follow, args=(api, records, resource, listed), daemon=True).start()
        events.append(listed)
    for listed in events:
        listed.wait()
    LOG.info("serving records for *.svc.%s", args.domain)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


def query(server: str, port: int, name: str, timeout: float = 2.0) -> list[str]:
    """The A records of ``name`` from the DNS server at ``server:port`` (one UDP question)."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        reply = sock.recv(4096)
    got_ident, _flags, questions, answers = struct.unpack("!HHHH", reply[:8])
    if got_ident != ident:
        return []
    offset = 12
    for _ in range(questions):
        offset = _skip_name(reply, offset) + 4
    addresses = []
    for _ in range(answers):
        offset = _skip_name(reply, offset)
        rtype, _rclass, _ttl, length = struct.unpack("!HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return addresses


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # compression pointer: two bytes, and the name ends there
            return offset + 2
        offset += length + 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    watcher = commands.add_parser("watch")
    for flag in ("--server", "--ca", "--cert", "--key", "--hosts"):
        watcher.add_argument(flag, required=True)
    watcher.add_argument("--dnsmasq-pid", type=int, required=True)
    watcher.add_argument("--domain", default="cluster.local")
    asker = commands.add_parser("query")
    asker.add_argument("server")
    asker.add_argument("port", type=int)
    asker.add_argument("name")
    args = parser.parse_args()
    if args.command == "watch":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        return watch(args)
    try:
        addresses = query(args.server, args.port, args.name)
    except OSError as exc:
        print(f"no answer from {args.server}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(addresses))
    return 0 if addresses else 1


if __name__ == "__main__":
    sys.exit(main())

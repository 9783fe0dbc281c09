"""A local EC2 endpoint for the EC2 driver's tests: moto's server on loopback, behind a fault-injecting proxy.

moto's ``ThreadedMotoServer`` is a real HTTP endpoint speaking the EC2 query API; boto3 is the real client. It
moves instances to ``running`` at once and never throttles, so ``FaultProxy`` sits between the two: a plain
HTTP forwarder on loopback that, by rule, answers an action with an EC2 error document (throttling, capacity,
a bad AMI) for a number of calls, or makes DescribeInstances show ``running`` instances as ``pending`` for a
number of calls (a slow boot). Everything else goes to moto unchanged.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
REGION = "eu-west-1"


@dataclass
class Fault:
    action: str  # the EC2 Action, e.g. RunInstances
    times: int  # how many calls it applies to
    code: str | None = None  # an error code to answer with; None with ``pending`` set
    status: int = 400
    pending: bool = False  # DescribeInstances: running instances appear pending


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # every action seen, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.calls.clear()

    def _take(self, action: str) -> Fault | None:
        with self.lock:
            self.calls.append(action)
            for fault in self.faults:
                if fault.action == action and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def start(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # the base's signature
                pass

            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = parse_qs(body.decode()).get("Action", [""])[0]
                if "moto-api" in self.path:
                    action = ""
                fault = proxy._take(action) if action else None
                if fault is not None and fault.code is not None:
                    document = (
                        f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{fault.code}</Code>"
                        f"<Message>injected {fault.code}</Message></Error></Errors><RequestID>x</RequestID></Response>"
                    ).encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(document)))
                    self.end_headers()
                    self.wfile.write(document)
                    return
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                connection.request("POST", self.path, body=body, headers=headers)
                reply = connection.getresponse()
                payload = reply.read()
                if fault is not None and fault.pending:
                    payload = payload.replace(b"<code>16</code>", b"<code>0</code>").replace(
                        b"<name>running</name>", b"<name>pending</name>"
                    )
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                connection.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class LocalEC2:
    """moto on loopback and the proxy in front of it; ``url`` is the endpoint the drivers use."""

    moto_url: str
    proxy: FaultProxy

    @property
    def url(self) -> str:
        return self.proxy.url

    def reset(self) -> None:
        """Forget every instance, VPC, group and fault (between tests)."""
        host, port = self.proxy.upstream
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("POST", "/moto-api/reset")
        connection.getresponse().read()
        connection.close()
        self.proxy.clear()

    def client(self) -> Any:
        """A boto3 client straight to moto (no faults): what someone acting behind nebctl's back uses."""
        import boto3

        return boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=self.moto_url,
            aws_access_key_id=CREDENTIALS["access_key_id"],
            aws_secret_access_key=CREDENTIALS["secret_access_key"],
        )


def start_local_ec2() -> Iterator[LocalEC2]:
    """Start moto's server and the proxy; a generator for a session fixture."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultProxy(upstream=(host, port))
    proxy.start()
    try:
        yield LocalEC2(moto_url=f"http://{host}:{port}", proxy=proxy)
    finally:
        proxy.stop()
        server.stop()

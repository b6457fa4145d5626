#!/usr/bin/env python3
"""A framewire client in Python with only the standard library (socket + struct).

Shows that the wire format is language-neutral: every message is a 4-byte big-endian length
followed by that many payload bytes. This program talks to the framewire echo server in plain
mode, checks every reply, and exits 0 only if all of them were right.

    cargo run --example echo_server                  # tutorial mode: greeting, replies + 好
    python3 examples/interop/echo_client.py

    cargo run --example echo_server -- --mirror      # byte-for-byte echo, no greeting
    python3 examples/interop/echo_client.py --mirror

    cargo run --example echo_server -- --tls-cert cert.pem --tls-key key.pem
    python3 examples/interop/echo_client.py --tls-ca cert.pem   # over TLS (Python's ssl)

Options: --addr HOST:PORT (default 127.0.0.1:9999), --mirror, --tls-ca FILE (TLS, verifying
the server's certificate against the CA certificate(s) in FILE and its name against the host
in --addr, or --tls-name NAME).
"""

import argparse
import socket
import ssl
import struct
import sys

HEADER = struct.Struct(">I")  # u32, big-endian: the whole framing protocol


def send_frame(sock, payload):
    """One frame: length prefix, then payload, in a single write."""
    sock.sendall(HEADER.pack(len(payload)) + payload)


def recv_exact(sock, n):
    """Read exactly n bytes; TCP may hand them over in any number of pieces."""
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise ConnectionError("connection closed with %d bytes still expected" % n)
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock):
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return recv_exact(sock, length)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:9999")
    parser.add_argument("--mirror", action="store_true",
                        help="the server echoes byte for byte and sends no greeting")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="speak TLS, trusting the CA certificate(s) in FILE")
    parser.add_argument("--tls-name", metavar="NAME",
                        help="the name the server's certificate must carry (default: the host)")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    suffix = b"" if args.mirror else "好".encode("utf-8")

    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls_ca:
        # The standard library's defaults: certificate and host name verified.
        context = ssl.create_default_context(cafile=args.tls_ca)
        sock = context.wrap_socket(sock, server_hostname=args.tls_name or host)
        print("TLS: %s, %s" % (sock.version(), sock.cipher()[0]))
    failures = 0
    checked = 0

    def expect(sent):
        nonlocal failures, checked
        reply = recv_frame(sock)
        checked += 1
        if reply != sent + suffix:
            failures += 1
            print("MISMATCH: sent %d bytes %r..., got %d bytes %r..."
                  % (len(sent), sent[:20], len(reply), reply[:20]))

    if not args.mirror:
        greeting = recv_frame(sock).decode("utf-8")
        print("greeting:", greeting)
        if greeting != "你好欢迎你":
            failures += 1
            print("MISMATCH: unexpected greeting %r" % greeting)

    # 1. One request, one reply, like the tutorial.
    for msg in [b"hello", "你好".encode("utf-8"), b"", bytes(range(256)) * 400]:
        send_frame(sock, msg)
        expect(msg)
        print("sent %6d bytes, reply ok" % len(msg))

    # 2. Coalesced: 50 frames in one write. The server must still see 50 messages.
    batch = [("frame %d " % i).encode() * (i % 5 + 1) for i in range(50)]
    sock.sendall(b"".join(HEADER.pack(len(m)) + m for m in batch))
    for msg in batch:
        expect(msg)
    print("50 frames in one write: %d replies ok" % len(batch))

    # 3. Split: one frame written a byte at a time.
    msg = b"split across many writes"
    for b in HEADER.pack(len(msg)) + msg:
        sock.sendall(bytes([b]))
    expect(msg)
    print("1 frame in %d one-byte writes: reply ok" % (HEADER.size + len(msg)))

    # 4. End the conversation: `q` in tutorial mode, a half-close in mirror mode. Either way
    #    the server closes its side, which we see as end of stream.
    if args.mirror and args.tls_ca:
        sock = sock.unwrap()  # TLS close_notify both ways, then plain TCP
    elif args.mirror:
        sock.shutdown(socket.SHUT_WR)
    else:
        send_frame(sock, b"q")
    if sock.recv(1) != b"":
        failures += 1
        print("MISMATCH: expected the server to close the connection")
    sock.close()

    print("python interop: %d replies checked, %d failures" % (checked, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

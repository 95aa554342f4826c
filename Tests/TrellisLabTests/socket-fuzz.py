# Fuzzes an HTTP server on a unix socket with generated requests: malformed, oversized and half-written
# ones, and JSON bodies of random shapes for every path given. Run as
#   python3 socket-fuzz.py SOCKET SEED COUNT PATH...
# Prints one JSON line: how many requests got each status class, how many got no answer at all, and
# the first request that got a 5xx (None if none did). Subnet and namespace values are never real
# ones, so no generated request can plug anything into the kernel.
import json, os, random, socket, sys

path, seed, count, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rng = random.Random(seed)
FIELDS = ["subnet", "name", "ip", "ifname", "profile", "pid", "netns", "vm", "tap", "user", "owner", "externalIds",
          "egressRate", "ingressRate", "endpoint", "containerID", "ifName", "config", "args", "runtimeConfig",
          "bandwidth", "rate", "burst", "NetworkID", "EndpointID", "Options", "Pool", "SubPool", "V6", "PoolID",
          "Address", "Interface", "MacAddress", "IPv4Data", "IPv6Data", "SandboxKey", "Gateway", "cniVersion",
          "validAttachments", "attachments", "host", "state", "ipv4"]


def value(depth=0):
    kind = rng.randrange(11 if depth < 3 else 7)
    if kind == 0: return None
    if kind == 1: return rng.choice([True, False])
    if kind == 2: return rng.choice([0, -1, 1, 2**31, 2**63 - 1, -2**63, 2**64, 1e308, -0.0, 3.5])
    if kind == 3: return "".join(rng.choice("ab/.-_:%\\\"\u00e9\u0000 \u202e") for _ in range(rng.randrange(40)))
    if kind == 4: return rng.choice(["", "acme/x/y/z", "../../etc/passwd", "/proc/1/ns/net-nope", "10.0.0.1/33",
                                     "ff" * 40, "x" * 5000, "eth0", "/run/netns/../../tmp", "999.1.1.1"])
    if kind == 5: return rng.randrange(-10, 70000)
    if kind == 6: return "/nonexistent/" + "".join(rng.choice("abc") for _ in range(8))
    if kind in (7, 8): return {rng.choice(FIELDS): value(depth + 1) for _ in range(rng.randrange(6))}
    return [value(depth + 1) for _ in range(rng.randrange(5))]


def body():
    shape = rng.randrange(10)
    if shape == 0: return os.urandom(rng.randrange(1, 200))
    if shape == 1: return b"{" * rng.randrange(1, 3000)
    if shape == 2: return json.dumps(value()).encode()
    fields = {rng.choice(FIELDS): value() for _ in range(rng.randrange(1, 8))}
    if "subnet" in fields and isinstance(fields["subnet"], str) and fields["subnet"].count("/") == 3:
        fields["subnet"] = "nope/" + fields["subnet"]
    return json.dumps(fields).encode()


def exchange(raw, read=True, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(raw)
        if not read:
            return None
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk: break
            answer += chunk
        return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else None
    except (socket.timeout, ConnectionError, ValueError, IndexError):
        return None
    finally:
        s.close()


def request(target, payload, extra=b""):
    return (b"POST " + target.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: " + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n" + payload)


classes, silent, first_error = {}, 0, None
def note(status, what):
    global silent, first_error
    if status is None:
        silent += 1
        return
    classes[str(status // 100) + "xx"] = classes.get(str(status // 100) + "xx", 0) + 1
    if status >= 500 and first_error is None:
        first_error = what[:300]

# Half-written requests, held open together, then dropped.
held = []
for target in targets:
    for cut in (10, 40, 90):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(request(target, b'{"subnet": "a/b/c/d", "name": "half"}')[:cut])
        held.append(s)
for s in held:
    s.close()
# Broken HTTP.
for raw in (os.urandom(300), b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 100000 + b"\r\n\r\n", b"\r\n\r\n\r\n",
            b"POST /v1/attach HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /v1/attach HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
    exchange(raw)
# An oversized body is refused, never read into memory whole (the server may answer before reading it all,
# or close the connection: either way no 5xx).
status = exchange(request(targets[0], b"[" + b"1," * (1 << 20) + b"1]"), timeout=3)
if status is not None: note(status, targets[0] + " oversized")
# Generated bodies.
for index in range(count):
    target = rng.choice(targets)
    payload = body()
    note(exchange(request(target, payload)), target + " " + payload[:200].decode("utf-8", "replace"))
print(json.dumps({"classes": classes, "silent": silent, "firstServerError": first_error}))

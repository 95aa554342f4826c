# Abuses a domain's resolver from inside a container namespace, then asks it a name with dig over
# UDP and TCP: run as `python3 dns-abuse.py NAME`; prints what it saw on one line.
import os, socket, subprocess, sys
server = ("169.254.169.253", 53)
held = []
for i in range(80):  # more connections than the resolver keeps; each sends half a message and waits
    s = socket.create_connection(server, timeout=2)
    s.sendall(b"\x00\x40\x12\x34")
    held.append(s)
garbage = socket.create_connection(server, timeout=2)
garbage.sendall(b"\x00\x05hello")  # a framed message that is no query: the connection is closed
closed = garbage.recv(10) == b""
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for size in (0, 1, 11, 12, 40, 600, 4000):
    udp.sendto(os.urandom(size), server)
def dig(*options):
    command = ["dig", "@169.254.169.253", "+time=2", "+tries=1", "+short", *options, sys.argv[1]]
    return subprocess.run(command, capture_output=True, text=True).stdout.strip()
answer = dig()
tcp = dig("+tcp")
print(f"garbage-closed={closed} udp={answer} tcp={tcp}")

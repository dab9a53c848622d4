# Reads names on stdin, one a line, and greets each.
import sys

for line in sys.stdin:
    name = line.strip()
    if name:
        print(f"hello, {name}, from Python {sys.version_info.major}.{sys.version_info.minor}")

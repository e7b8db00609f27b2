"""The file descriptors of a sample's process, the whole protocol between it and the worker.

stdin is /dev/null; stdout and stderr share the capped output pipe; RESULT carries the verdict marker (/dev/null in
the isolated candidate, which cannot pass anything); CHAN_IN/CHAN_OUT are the isolated oracle's call channel (the
judge sends on CHAN_OUT and reads on CHAN_IN, the candidate the other way round); PAYLOAD is read to its end and
closed before any of the payload runs. Every other descriptor is closed.
"""
STDIN, STDOUT, STDERR, RESULT = 0, 1, 2, 3
CHAN_IN, CHAN_OUT = 4, 5
PAYLOAD = 6
FIRST_CLOSED = 7

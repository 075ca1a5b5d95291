"""The lab itself: servers and topologies, connect(), lessons and their exercises, faults, round-trip
counting, and what a server can do. It imports no pattern (only its exercises, which grade a
learner's code, may)."""

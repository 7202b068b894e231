"""Generated gRPC stubs (scripts/gen_proto.py)."""
